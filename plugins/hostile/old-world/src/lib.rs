//! Test plugin: a passthrough of the previous world,
//! `hourglass:plugin@0.1.0` (its WIT kept as it was in `wit/`), which the
//! host must refuse at load, naming the version.

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});

struct Old;

impl Guest for Old {
    fn init(_config: String, _data: Vec<u8>) -> Result<DeclaredFields, String> {
        Ok(DeclaredFields {
            reads: Vec::new(),
            writes: Vec::new(),
        })
    }

    fn process(batch: Vec<Event>) -> Vec<Outcome> {
        batch.iter().map(|_| Outcome::Keep).collect()
    }
}

export!(Old);
