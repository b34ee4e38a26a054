//! Test plugin: a component that imports a function from the host, which
//! the host must refuse at load (plugins import nothing).

wit_bindgen::generate!({
    inline: "package test:imports; world plugin { import log: func(msg: string); export run: func() -> u32; }",
});

struct Chatty;

impl Guest for Chatty {
    fn run() -> u32 {
        log("hello from the sandbox");
        7
    }
}

export!(Chatty);
