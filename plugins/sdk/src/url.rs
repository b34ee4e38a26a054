//! The pieces of a URL plugins look at, without a URL parser in the guest.

/// The lower-cased host of an absolute URL (`https://www.Example.com:8080/a`
/// → `www.example.com`); `None` when there is no `scheme://`.
pub fn host(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        // An IPv6 literal keeps its colons.
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `host` without a leading `www.` or `m.`.
pub fn bare_host(host: &str) -> &str {
    host.strip_prefix("www.")
        .or_else(|| host.strip_prefix("m."))
        .unwrap_or(host)
}

/// Splits a URL into (before `?`, query, `#fragment` or empty).
pub fn split_query(url: &str) -> (&str, Option<&str>, &str) {
    let (rest, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    match rest.split_once('?') {
        Some((base, query)) => (base, Some(query), fragment),
        None => (rest, None, fragment),
    }
}

/// The raw (not percent-decoded) value of query parameter `name` in `url`.
pub fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query, _) = split_query(url);
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}
