use crate::support::{plugins, repo};

#[test]
fn every_example_spec_validates_and_declares_the_schema() {
    let dir = repo().join("specs");
    let plugins = plugins().display().to_string();
    let env = |name: &str| match name {
        "TRADES_FILE" => Some(
            repo()
                .join("specs/sample/trades.jsonl")
                .display()
                .to_string(),
        ),
        "SECTORS_FILE" => Some(
            repo()
                .join("specs/sample/sectors.csv")
                .display()
                .to_string(),
        ),
        "OUT_URL" => Some("/tmp/tickflow-spec-check".to_string()),
        "PLUGINS" => Some(plugins.clone()),
        "MODEL" => Some(
            repo()
                .join("specs/sample/updown-logit.onnx")
                .display()
                .to_string(),
        ),
        _ => None,
    };
    let mut checked = 0;
    // The examples, and the pipeline deploy/k8s puts in its ConfigMap.
    let k8s = repo().join("deploy/k8s/base/pipeline.yaml");
    let examples = std::fs::read_dir(dir.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path());
    let paths = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain(examples)
        .chain([k8s.clone()]);
    for path in paths {
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let schema = if path == k8s {
            "../../../schemas"
        } else if path.parent().is_some_and(|p| p.ends_with("examples")) {
            "../../schemas"
        } else {
            "../schemas"
        };
        assert!(
            text.starts_with(&format!(
                "# yaml-language-server: $schema={schema}/pipeline.schema.json\n"
            )),
            "{} must start with the schema line",
            path.display()
        );
        let loaded = tickflow::spec::load_str(&path.display().to_string(), &text, &env)
            .unwrap_or_else(|e| panic!("{e}"));
        tickflow::plan::build(&loaded).unwrap_or_else(|e| panic!("{e}"));
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn the_committed_json_schema_matches_the_code() {
    let committed =
        std::fs::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap_or_default();
    let current = tickflow::spec::json_schema();
    assert!(
        committed == current,
        "schemas/pipeline.schema.json is out of date: run `cargo run -q -- schema > schemas/pipeline.schema.json`"
    );
}

/// The layers of the crate (base, expr, metrics, ..., plan, dataflow, cli) import each other in
/// one direction only: `scripts/imports` finds the strongly connected components of the module
/// graph, and fails on any between top-level modules.
#[test]
fn the_layers_have_no_import_circle() {
    let out = std::process::Command::new("python3")
        .arg(repo().join("scripts/imports"))
        .args(["--layers", "--check"])
        .output()
        .expect("python3 runs scripts/imports");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.trim_end().ends_with("0 circle(s)"),
        "import circles between layers:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
