//! Test plugin: a well-formed component of another world, which the host
//! must refuse at load.

wit_bindgen::generate!({
    inline: "package test:wrong; world other { export run: func() -> u32; }",
});

struct Other;

impl Guest for Other {
    fn run() -> u32 {
        7
    }
}

export!(Other);
