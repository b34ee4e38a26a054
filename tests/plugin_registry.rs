//! The plugin registry end to end: a real `central-ingest serve` with the
//! merchant API on a real ClickHouse, real components from `cargo xtask
//! plugins` (the reference plugins and the hostile ones), and the
//! `central-ingest plugin` CLI on the same warehouse and archive.
//!
//! What a user would check: status codes and the step named in a refusal,
//! the blob in the archive under its SHA-256 (once), the rows of
//! `plugins`, `plugin_bindings` and `plugin_binding_log`, the refusal
//! counters.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hourglass_e2e::central::{Central, admin, ca_with_server_cert, field, migrate, text};
use hourglass_testkit::TestDb;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn component(name: &str) -> Vec<u8> {
    let path = hourglass_testkit::state_dir()
        .join("plugins")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}. Build the plugins first: `cargo xtask plugins`",
            path.display()
        )
    })
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

struct Answer {
    status: u16,
    body: Value,
}

fn answer(mut r: ureq::http::Response<ureq::Body>) -> Answer {
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
    }
}

/// `POST /api/v1/plugins?QUERY` with `bytes` as the body.
fn upload(api: &str, key: Option<&str>, query: &str, bytes: &[u8]) -> Answer {
    let mut req = agent()
        .post(&format!("{api}/api/v1/plugins?{query}"))
        .header("Content-Type", "application/wasm");
    if let Some(key) = key {
        req = req.header("Authorization", &format!("Bearer {key}"));
    }
    answer(req.send(bytes).unwrap())
}

fn post_json(api: &str, key: &str, path: &str, body: &Value) -> Answer {
    answer(
        agent()
            .post(&format!("{api}{path}"))
            .header("Authorization", &format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap(),
    )
}

fn get(api: &str, key: &str, path: &str) -> Answer {
    answer(
        agent()
            .get(&format!("{api}{path}"))
            .header("Authorization", &format!("Bearer {key}"))
            .call()
            .unwrap(),
    )
}

/// A merchant with one site; (merchant id, API key).
fn merchant(db: &TestDb, name: &str, site_id: &str, domain: &str) -> (String, String) {
    let m = field(&admin(db, &["merchant", "add", name]), "merchant_id");
    admin(
        db,
        &[
            "site",
            "add",
            "--merchant",
            &m,
            "--domain",
            domain,
            "--id",
            site_id,
        ],
    );
    let key = field(
        &admin(
            db,
            &["key", "create", "--merchant", &m, "--rate-limit", "1000000"],
        ),
        "key",
    );
    (m, key)
}

/// The files under the archive's `plugins/blobs/`.
fn blobs(archive: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(archive.join("plugins/blobs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.contains('#'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The live binding rows of `scope`: (name, version, config, data,
/// on_failure, position), as `plugin_bindings` holds them.
fn bindings(db: &TestDb, scope: &str) -> Vec<Vec<String>> {
    let sql = format!(
        "SELECT name, pv, c, ds, f, p FROM (SELECT scope, name, \
         argMax(plugin_version, version) AS pv, argMax(config, version) AS c, \
         argMax(data_sha256, version) AS ds, argMax(on_failure, version) AS f, \
         argMax(position, version) AS p, argMax(deleted, version) AS d \
         FROM plugin_bindings WHERE scope = '{scope}' GROUP BY scope, name) \
         WHERE d = 0 ORDER BY p, name FORMAT TSV"
    );
    db.query(&sql)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn row(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| (*f).to_owned()).collect()
}

struct Stack {
    _dir: tempfile::TempDir,
    db: TestDb,
    central: Central,
    api: String,
}

/// The operator's admin token of [`stack`]'s central.
const ADMIN_TOKEN: &str = "operator-token-of-the-registry-tests";

/// A migrated database and central with the API on, the admin token
/// [`ADMIN_TOKEN`], the component cap at 256 KiB (the reference plugins
/// are under 210 KiB).
fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let db = hourglass_testkit::fresh_database();
    migrate(&db);
    let certs = dir.path().join("certs");
    ca_with_server_cert(&certs);
    let central = Central::start_with_api_toml(
        &dir.path().join("central"),
        &certs,
        &db,
        false,
        &format!(
            "admin_token_sha256 = \"{}\"\n[registry]\nmax_component_bytes = 262144\n",
            hourglass_warehouse::metadata::hash_api_key(ADMIN_TOKEN)
        ),
    );
    let api = central.api_url.clone().unwrap();
    Stack {
        _dir: dir,
        db,
        central,
        api,
    }
}

#[test]
fn upload_list_activate_and_roll_back_over_the_api() {
    let Stack {
        db, central, api, ..
    } = stack();
    let (_, shop_key) = merchant(&db, "Shop", "s_shop", "shop.example");
    let (_, blog_key) = merchant(&db, "Blog", "s_blog", "blog.example");
    let channel = component("channel");
    let hash = sha256(&channel);

    // Upload: stored under its hash, recorded ready.
    let up = upload(
        &api,
        Some(&shop_key),
        "name=channel&version=1.0.0",
        &channel,
    );
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["sha256"], hash);
    assert_eq!(up.body["status"], "ready");
    assert_eq!(up.body["stored"], "new");
    assert!(
        up.body["detail"].as_str().unwrap().contains("writes:"),
        "{}",
        up.body
    );
    let archive = central.archive_dir();
    assert_eq!(blobs(&archive), std::slice::from_ref(&hash));
    assert_eq!(
        std::fs::read(archive.join("plugins/blobs").join(&hash)).unwrap(),
        channel
    );

    // The same bytes again: nothing new, no second blob, no second row.
    let again = upload(
        &api,
        Some(&shop_key),
        "name=channel&version=1.0.0",
        &channel,
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["stored"], "unchanged");
    assert_eq!(again.body["sha256"], hash);
    assert_eq!(blobs(&archive), std::slice::from_ref(&hash));
    assert_eq!(
        db.query("SELECT count() FROM plugins WHERE name = 'channel'")
            .unwrap()
            .trim(),
        "1"
    );
    // Other bytes under a taken name@version: refused, for anyone.
    for key in [&shop_key, &blog_key] {
        let taken = upload(
            &api,
            Some(key),
            "name=channel&version=1.0.0",
            &component("passthrough"),
        );
        assert_eq!(taken.status, 409, "{}", taken.body);
    }
    // A second version (the same component; a new name@version).
    let v2 = upload(
        &api,
        Some(&shop_key),
        "name=channel&version=1.1.0",
        &channel,
    );
    assert_eq!(v2.status, 201, "{}", v2.body);
    assert_eq!(blobs(&archive).len(), 1);

    // Listing: the shop sees both versions, the blog neither.
    let listed = get(&api, &shop_key, "/api/v1/plugins");
    assert_eq!(listed.status, 200);
    let versions: Vec<&str> = listed.body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    let blog_list = get(&api, &blog_key, "/api/v1/plugins");
    assert_eq!(blog_list.body["plugins"], json!([]));

    // Activate 1.0.0, then 1.1.0 with another config and place.
    let activate = |version: &str, config: &str, position: Option<u16>| {
        let mut body = json!({
            "name": "channel", "version": version, "site_id": "shop.example",
            "config": config, "on_failure": "skip-plugin",
        });
        if let Some(p) = position {
            body["position"] = json!(p);
        }
        post_json(&api, &shop_key, "/api/v1/plugins/activate", &body)
    };
    let a1 = activate("1.0.0", "internal_hosts = pay.example.net", None);
    assert_eq!(a1.status, 200, "{}", a1.body);
    assert_eq!(a1.body["site_id"], "shop.example");
    let first = row(&[
        "channel",
        "1.0.0",
        "internal_hosts = pay.example.net",
        "",
        "skip-plugin",
        "0",
    ]);
    assert_eq!(bindings(&db, "s_shop"), std::slice::from_ref(&first));
    let a2 = activate("1.1.0", "", Some(3));
    assert_eq!(a2.status, 200, "{}", a2.body);
    assert_eq!(
        bindings(&db, "s_shop"),
        [row(&["channel", "1.1.0", "", "", "skip-plugin", "3"])]
    );
    assert_eq!(
        db.query("SELECT argMax(sha256, version) FROM plugin_bindings WHERE scope = 's_shop'")
            .unwrap()
            .trim(),
        hash
    );

    // Roll back: the binding before, exactly.
    let back = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/rollback",
        &json!({"name": "channel", "site_id": "shop.example"}),
    );
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.body["version"], "1.0.0");
    assert_eq!(bindings(&db, "s_shop"), std::slice::from_ref(&first));
    assert_eq!(
        db.query("SELECT count() FROM plugin_binding_log WHERE scope = 's_shop'")
            .unwrap()
            .trim(),
        "3"
    );
    // Deactivate: the chain is empty; a rollback brings it back.
    let off = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/deactivate",
        &json!({"name": "channel", "site_id": "shop.example"}),
    );
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["active"], false);
    assert!(bindings(&db, "s_shop").is_empty());
    let rollback = || {
        post_json(
            &api,
            &shop_key,
            "/api/v1/plugins/rollback",
            &json!({"name": "channel", "site_id": "shop.example"}),
        )
    };
    let back_on = rollback();
    assert_eq!(back_on.status, 200, "{}", back_on.body);
    assert_eq!(bindings(&db, "s_shop"), std::slice::from_ref(&first));
    // A rollback of a rollback undoes it (the deactivation again), and
    // once more brings the binding back.
    assert_eq!(rollback().body["active"], false);
    assert!(bindings(&db, "s_shop").is_empty());
    assert_eq!(rollback().body["version"], "1.0.0");
    assert_eq!(bindings(&db, "s_shop"), std::slice::from_ref(&first));
    let off = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/deactivate",
        &json!({"name": "channel", "site_id": "shop.example"}),
    );
    assert_eq!(off.status, 200, "{}", off.body);
    assert!(bindings(&db, "s_shop").is_empty());
    // Nothing bound to deactivate; never bound to roll back.
    let again = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/deactivate",
        &json!({"name": "channel", "site_id": "shop.example"}),
    );
    assert_eq!(again.status, 404, "{}", again.body);
    let never = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/rollback",
        &json!({"name": "ua-parse", "site_id": "shop.example"}),
    );
    assert_eq!(never.status, 404, "{}", never.body);

    // An activation is validated with its own config: `loop` on every
    // event fails the dry run, and nothing is bound.
    let mis = upload(
        &api,
        Some(&shop_key),
        "name=misbehave&version=1",
        &component("misbehave"),
    );
    assert_eq!(mis.status, 201, "{}", mis.body);
    let bad = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/activate",
        &json!({"name": "misbehave", "version": "1", "site_id": "shop.example", "config": "mode = loop"}),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.body["step"], "dry-run");
    assert!(bindings(&db, "s_shop").is_empty());

    // Another merchant: the shop's site is 404 like an unknown one, and so
    // is the shop's plugin on the blog's own site.
    let foreign = post_json(
        &api,
        &blog_key,
        "/api/v1/plugins/activate",
        &json!({"name": "channel", "version": "1.0.0", "site_id": "shop.example"}),
    );
    assert_eq!(foreign.status, 404, "{}", foreign.body);
    assert_eq!(foreign.body["error"], "site not found");
    let not_theirs = post_json(
        &api,
        &blog_key,
        "/api/v1/plugins/activate",
        &json!({"name": "channel", "version": "1.0.0", "site_id": "blog.example"}),
    );
    assert_eq!(not_theirs.status, 404, "{}", not_theirs.body);
    let foreign_rollback = post_json(
        &api,
        &blog_key,
        "/api/v1/plugins/rollback",
        &json!({"name": "channel", "site_id": "shop.example"}),
    );
    assert_eq!(foreign_rollback.status, 404);
    assert!(bindings(&db, "s_blog").is_empty());

    // No key; the platform chain over HTTP; an oversized component.
    assert_eq!(upload(&api, None, "name=x&version=1", &channel).status, 401);
    let platform = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/activate",
        &json!({"name": "channel", "version": "1.0.0"}),
    );
    assert_eq!(platform.status, 403, "{}", platform.body);
    let huge = vec![0u8; 262_144 + 10];
    let too_big = upload(&api, Some(&shop_key), "name=big&version=1", &huge);
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    assert_eq!(
        db.query("SELECT count() FROM plugins WHERE name = 'big'")
            .unwrap()
            .trim(),
        "0"
    );

    // Data blobs: stored by hash, once; a binding names one.
    let patterns = b"Googlebot\nbingbot\n".to_vec();
    let put = |bytes: &[u8]| {
        answer(
            agent()
                .post(&format!("{api}/api/v1/plugins/data"))
                .header("Authorization", &format!("Bearer {shop_key}"))
                .send(bytes)
                .unwrap(),
        )
    };
    let data = put(&patterns);
    assert_eq!(data.status, 201, "{}", data.body);
    assert_eq!(data.body["sha256"], sha256(&patterns));
    // Again: the same hash, still one blob for it.
    let blobs_before = blobs(&archive).len();
    assert_eq!(put(&patterns).body["sha256"], sha256(&patterns));
    assert_eq!(blobs(&archive).len(), blobs_before);
    let bot = upload(
        &api,
        Some(&shop_key),
        "name=bot-filter&version=1",
        &component("bot-filter"),
    );
    assert_eq!(bot.status, 201, "{}", bot.body);
    let with_data = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/activate",
        &json!({"name": "bot-filter", "version": "1", "site_id": "shop.example",
                "data_sha256": sha256(&patterns), "on_failure": "reject-batch", "position": 0}),
    );
    assert_eq!(with_data.status, 200, "{}", with_data.body);
    assert_eq!(
        bindings(&db, "s_shop"),
        [row(&[
            "bot-filter",
            "1",
            "",
            &sha256(&patterns),
            "reject-batch",
            "0"
        ])]
    );
    // Data the plugin's init refuses (not UTF-8) fails activation at init.
    let bad_data = put(&[0xff, 0xfe, 0x00]);
    let refused = post_json(
        &api,
        &shop_key,
        "/api/v1/plugins/activate",
        &json!({"name": "bot-filter", "version": "1", "site_id": "shop.example",
                "data_sha256": bad_data.body["sha256"]}),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["step"], "init");

    // The OpenAPI document names the routes.
    let doc = answer(
        agent()
            .get(&format!("{api}/api/v1/openapi.json"))
            .call()
            .unwrap(),
    );
    for path in [
        "/api/v1/plugins",
        "/api/v1/plugins/data",
        "/api/v1/plugins/activate",
        "/api/v1/plugins/rollback",
    ] {
        assert!(
            doc.body["paths"][path].is_object(),
            "{path} not in the OpenAPI document"
        );
    }
}

#[test]
fn hostile_uploads_are_refused_with_the_step_that_failed() {
    let Stack {
        db, central, api, ..
    } = stack();
    let (_, key) = merchant(&db, "Shop", "s_shop", "shop.example");
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut truncated = component("passthrough");
    truncated.truncate(truncated.len() / 2);
    let misbehave = component("misbehave");
    // (version, bytes, config for the check, step, words in the error
    // (`|` between alternatives))
    let cases: Vec<(&str, Vec<u8>, &str, &str, &str)> = vec![
        ("random", random, "", "decode", "not WebAssembly"),
        // A valid (empty) core module.
        (
            "core",
            b"\0asm\x01\0\0\0".to_vec(),
            "",
            "decode",
            "core WebAssembly module",
        ),
        ("truncated", truncated, "", "compile", ""),
        (
            "imports",
            component("imports"),
            "",
            "imports",
            "imports log",
        ),
        (
            "wrong-world",
            component("wrong-world"),
            "",
            "world",
            "`init`",
        ),
        // Built against the previous version of the world.
        (
            "old-world",
            component("old-world"),
            "",
            "world",
            "hourglass:plugin/types@0.1.0",
        ),
        (
            "init-error",
            misbehave.clone(),
            "mode = init-error",
            "init",
            "asked to fail",
        ),
        (
            "loop-init",
            misbehave.clone(),
            "mode = loop-init",
            "init",
            "in init",
        ),
        (
            "loop",
            misbehave.clone(),
            "mode = loop",
            "dry-run",
            "in process",
        ),
        (
            "grow",
            misbehave.clone(),
            "mode = grow",
            "dry-run",
            "memory_cap",
        ),
        (
            "recurse",
            misbehave.clone(),
            "mode = recurse",
            "dry-run",
            "stack_overflow",
        ),
        (
            "panic",
            misbehave.clone(),
            "mode = panic",
            "dry-run",
            "trap",
        ),
        (
            "wrong-count",
            misbehave.clone(),
            "mode = wrong-count",
            "dry-run",
            "outcomes",
        ),
        // 4 MiB in one string per event: over the host's cap on output.
        (
            "huge",
            misbehave.clone(),
            "mode = huge",
            "dry-run",
            "oversized_output",
        ),
    ];
    for (version, bytes, config, step, words) in &cases {
        let query = format!(
            "name=hostile&version={version}&config={}",
            config.replace(' ', "+").replace('=', "%3D")
        );
        let a = upload(&api, Some(&key), &query, bytes);
        assert_eq!(a.status, 422, "{version}: {}", a.body);
        assert_eq!(a.body["step"], *step, "{version}: {}", a.body);
        let message = a.body["error"].as_str().unwrap();
        assert!(
            words.split('|').any(|w| message.contains(w)),
            "{version}: {message}"
        );
        eprintln!("{version}: {}", message.lines().next().unwrap_or_default());
        // Recorded as rejected with the step; nothing stored.
        let detail = db
            .query(&format!(
                "SELECT argMax(status, version), argMax(status_detail, version), \
                 argMax(archive_key, version) FROM plugins \
                 WHERE name = 'hostile' AND plugin_version = '{version}' FORMAT TSV"
            ))
            .unwrap();
        let fields: Vec<&str> = detail.trim_end_matches('\n').splitn(3, '\t').collect();
        assert_eq!(fields[0], "rejected", "{version}: {detail}");
        assert!(
            fields[1].starts_with(&format!("{step}: ")),
            "{version}: {detail}"
        );
        assert_eq!(fields[2], "", "{version}: {detail}");
    }
    assert!(
        !central.archive_dir().join("plugins/blobs").exists(),
        "a refused upload stored a blob"
    );
    for (step, n) in [
        ("decode", 2.0),
        ("compile", 1.0),
        ("imports", 1.0),
        ("world", 2.0),
        ("init", 2.0),
        ("dry-run", 6.0),
    ] {
        assert_eq!(
            central.metric(&format!(
                "hourglass_central_plugin_refusals_total{{step=\"{step}\"}}"
            )),
            n,
            "{step}"
        );
    }
    assert_eq!(
        central.metric("hourglass_central_plugin_uploads_total{outcome=\"refused\"}"),
        cases.len() as f64
    );

    // Misbehaving only on events named `boom` (none of the samples): it
    // passes, and is contained at run time by the edge's limits instead.
    let sleeper = upload(
        &api,
        Some(&key),
        "name=hostile&version=trigger&config=mode+%3D+loop%0Atrigger+%3D+boom",
        &misbehave,
    );
    assert_eq!(sleeper.status, 201, "{}", sleeper.body);
    // The server still takes good plugins, and a rejected name@version can
    // be uploaded again once fixed.
    let fixed = upload(&api, Some(&key), "name=hostile&version=loop", &misbehave);
    assert_eq!(fixed.status, 201, "{}", fixed.body);
}

#[test]
fn the_admin_token_manages_the_platform_chain_over_the_api() {
    let stack = stack();
    let (db, api) = (&stack.db, stack.api.as_str());
    let (_, shop_key) = merchant(db, "Shop", "s_shop", "shop.example");
    let validate = component("validate");
    let operator = |action: &str, body: Value| {
        post_json(
            api,
            ADMIN_TOKEN,
            &format!("/api/v1/plugins/{action}"),
            &body,
        )
    };

    // A merchant key may not touch the platform: 403, nothing stored.
    let refused = upload(
        api,
        Some(&shop_key),
        "name=validate&version=1&scope=platform",
        &validate,
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("admin token"),
        "{}",
        refused.body
    );
    assert_eq!(db.query("SELECT count() FROM plugins").unwrap().trim(), "0");

    // The admin token uploads platform plugins and changes the platform
    // chain (no site_id), with the same validation as everyone.
    let up = upload(api, Some(ADMIN_TOKEN), "name=validate&version=1", &validate);
    assert_eq!(up.status, 201, "{}", up.body);
    assert_eq!(up.body["owner"], "platform");
    let v2 = upload(
        api,
        Some(ADMIN_TOKEN),
        "name=validate&version=2&scope=platform",
        &validate,
    );
    assert_eq!(v2.status, 201, "{}", v2.body);
    for (version, config) in [("1", ""), ("2", "max_props = 5")] {
        let on = operator(
            "activate",
            json!({"name": "validate", "version": version, "config": config,
                    "on_failure": "reject-batch"}),
        );
        assert_eq!(on.status, 200, "{}", on.body);
        assert_eq!(on.body["scope"], "platform");
        assert_eq!(on.body["activated_by"], "admin-api");
    }
    assert_eq!(
        bindings(db, ""),
        [row(&[
            "validate",
            "2",
            "max_props = 5",
            "",
            "reject-batch",
            "0"
        ])]
    );
    let bad = operator(
        "activate",
        json!({"name": "validate", "version": "2", "config": "max_props = lots"}),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.body["step"], "init");
    let back = operator("rollback", json!({"name": "validate"}));
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.body["version"], "1");
    assert_eq!(
        bindings(db, ""),
        [row(&["validate", "1", "", "", "reject-batch", "0"])]
    );

    // The operator may change any merchant's site chain, by domain; an
    // unknown domain is 404.
    let site = operator(
        "activate",
        json!({"name": "validate", "version": "2", "site_id": "shop.example"}),
    );
    assert_eq!(site.status, 200, "{}", site.body);
    assert_eq!(site.body["site_id"], "shop.example");
    assert_eq!(bindings(db, "s_shop").len(), 1);
    let unknown = operator(
        "activate",
        json!({"name": "validate", "version": "2", "site_id": "nope.example"}),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // The merchant sees the platform plugin it runs and both chains; the
    // merchant may not roll the platform chain back.
    let listed = get(api, &shop_key, "/api/v1/plugins");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let scopes: Vec<(&str, &str)> = listed.body["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["scope"].as_str().unwrap(), b["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        scopes,
        [("platform", "1"), ("site", "2")],
        "{}",
        listed.body
    );
    let merchant_rollback = post_json(
        api,
        &shop_key,
        "/api/v1/plugins/rollback",
        &json!({"name": "validate"}),
    );
    assert_eq!(merchant_rollback.status, 403, "{}", merchant_rollback.body);
    assert_eq!(
        bindings(db, ""),
        [row(&["validate", "1", "", "", "reject-batch", "0"])]
    );

    // A wrong admin token is just an unknown key.
    let wrong = get(api, "operator-token-but-wrong", "/api/v1/plugins");
    assert_eq!(wrong.status, 401, "{}", wrong.body);
}

/// `central-ingest plugin ARGS` against the stack's warehouse and archive.
fn plugin_cli(stack: &Stack, args: &[&str]) -> std::process::Output {
    stack.central.plugin_cli(&stack.db, args)
}

fn ok_lines(out: &std::process::Output) -> Vec<(String, String)> {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_cli_manages_platform_and_merchant_plugins() {
    let stack = stack();
    let (merchant_id, key) = merchant(&stack.db, "Shop", "s_shop", "shop.example");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| -> PathBuf {
        let path = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, component(name)).unwrap();
        path
    };
    let validate = file("validate");
    let validate = validate.to_str().unwrap();

    // Platform plugin: upload, activate twice, roll back.
    let up = ok_lines(&plugin_cli(
        &stack,
        &[
            "upload",
            validate,
            "--name",
            "validate",
            "--version",
            "1",
            "--platform",
        ],
    ));
    assert_eq!(field(&up, "status"), "ready");
    assert_eq!(field(&up, "owner"), "platform");
    assert_eq!(field(&up, "sha256"), sha256(&component("validate")));
    ok_lines(&plugin_cli(
        &stack,
        &[
            "upload",
            validate,
            "--name",
            "validate",
            "--version",
            "2",
            "--platform",
        ],
    ));
    ok_lines(&plugin_cli(
        &stack,
        &[
            "activate",
            "validate",
            "1",
            "--platform",
            "--on-failure",
            "reject-batch",
        ],
    ));
    ok_lines(&plugin_cli(
        &stack,
        &[
            "activate",
            "validate",
            "2",
            "--platform",
            "--plugin-config",
            "max_props = 5",
        ],
    ));
    assert_eq!(
        bindings(&stack.db, ""),
        [row(&[
            "validate",
            "2",
            "max_props = 5",
            "",
            "skip-plugin",
            "0"
        ])]
    );
    let back = ok_lines(&plugin_cli(&stack, &["rollback", "validate", "--platform"]));
    assert_eq!(field(&back, "version"), "1");
    assert_eq!(
        bindings(&stack.db, ""),
        [row(&["validate", "1", "", "", "reject-batch", "0"])]
    );

    // A refused upload names its step.
    let wrong = file("wrong-world");
    let out = plugin_cli(
        &stack,
        &[
            "upload",
            wrong.to_str().unwrap(),
            "--name",
            "other",
            "--version",
            "1",
            "--platform",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("refused at step `world`"),
        "{}",
        text(&out)
    );
    // A config that makes init fail is refused at activation.
    let out = plugin_cli(
        &stack,
        &[
            "activate",
            "validate",
            "2",
            "--platform",
            "--plugin-config",
            "max_props = many",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("refused at step `init`"),
        "{}",
        text(&out)
    );

    // A plugin that needs a data file: refused at init without one, ready
    // with one (stored too), and bound with it.
    let geo = file("geo");
    let geo = geo.to_str().unwrap();
    let out = plugin_cli(
        &stack,
        &[
            "upload",
            geo,
            "--name",
            "geo",
            "--version",
            "1",
            "--platform",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("refused at step `init`") && text(&out).contains(".mmdb"),
        "{}",
        text(&out)
    );
    let mmdb =
        hourglass_testkit::workspace_root().join("plugins/geo/testdata/geo-country-fixture.mmdb");
    let up = ok_lines(&plugin_cli(
        &stack,
        &[
            "upload",
            geo,
            "--name",
            "geo",
            "--version",
            "1",
            "--platform",
            "--data",
            mmdb.to_str().unwrap(),
        ],
    ));
    assert_eq!(field(&up, "status"), "ready");
    let data_sha256 = field(&up, "data_sha256");
    assert_eq!(data_sha256, sha256(&std::fs::read(&mmdb).unwrap()));
    assert!(
        stack
            .central
            .archive_dir()
            .join("plugins/blobs")
            .join(&data_sha256)
            .exists()
    );
    // Bound without its data, init fails; with it, it is bound.
    let out = plugin_cli(&stack, &["activate", "geo", "1", "--platform"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("refused at step `init`"),
        "{}",
        text(&out)
    );
    ok_lines(&plugin_cli(
        &stack,
        &[
            "activate",
            "geo",
            "1",
            "--platform",
            "--data-sha256",
            &data_sha256,
            "--position",
            "1",
        ],
    ));
    assert_eq!(
        bindings(&stack.db, ""),
        [
            row(&["validate", "1", "", "", "reject-batch", "0"]),
            row(&["geo", "1", "", &data_sha256, "skip-plugin", "1"]),
        ]
    );

    // A merchant's plugin runs on its sites, not on the platform chain.
    let channel = file("channel");
    ok_lines(&plugin_cli(
        &stack,
        &[
            "upload",
            channel.to_str().unwrap(),
            "--name",
            "channel",
            "--version",
            "1",
            "--merchant",
            &merchant_id,
        ],
    ));
    let out = plugin_cli(&stack, &["activate", "channel", "1", "--platform"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    ok_lines(&plugin_cli(
        &stack,
        &[
            "activate",
            "channel",
            "1",
            "--site",
            "s_shop",
            "--position",
            "2",
        ],
    ));
    assert_eq!(
        bindings(&stack.db, "s_shop"),
        [row(&["channel", "1", "", "", "skip-plugin", "2"])]
    );
    // The merchant's key sees its plugin and the platform's, and both chains.
    let listed = get(&stack.api, &key, "/api/v1/plugins");
    let names: Vec<String> = listed.body["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}@{}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["channel@1", "geo@1", "validate@1", "validate@2"]);
    let scopes: Vec<&str> = listed.body["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["platform", "platform", "site"]);

    // `list` shows plugins (rejected ones too) and bindings.
    let out = plugin_cli(&stack, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("other\t1\tplatform\trejected"),
        "{listing}"
    );
    assert!(
        listing.contains("platform\t0\tvalidate\t1\treject-batch"),
        "{listing}"
    );
    assert!(
        listing.contains("s_shop\t2\tchannel\t1\tskip-plugin"),
        "{listing}"
    );
}
