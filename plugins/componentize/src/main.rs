//! `tickflow-componentize CORE.wasm OUT.wasm`: turns the core module a plugin crate builds for
//! `wasm32-unknown-unknown` into a WebAssembly component (the world is read from the custom
//! section the SDK's bindings embed). `plugins/build` runs it for every plugin.

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: tickflow-componentize CORE.wasm OUT.wasm");
    };
    let module = std::fs::read(input).with_context(|| format!("reading `{input}`"))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .with_context(|| format!("`{input}` is not a plugin module built with tickflow-plugin"))?
        .validate(true)
        .encode()
        .with_context(|| format!("encoding `{input}` as a component"))?;
    std::fs::write(output, component).with_context(|| format!("writing `{output}`"))?;
    Ok(())
}
