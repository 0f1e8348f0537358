//! `docs/config.md` against the code: its annotated example must load, set every key the
//! config has and show the defaults where it says so; its tables must name every key with the
//! default the code has. The README's config example must load too.

use std::collections::BTreeMap;
use std::path::Path;

use chainmesh::config::{Config, IdentityConfig};

const DOC: &str = include_str!("../../../docs/config.md");
const README: &str = include_str!("../../../README.md");

/// The first ```toml block after the line `after` (1-based line of its first line, text).
fn toml_block(doc: &str, after: &str) -> (usize, String) {
    let lines: Vec<&str> = doc.lines().collect();
    let from = lines
        .iter()
        .position(|l| l.trim() == after)
        .unwrap_or_else(|| panic!("no line `{after}`"));
    let open = from
        + lines[from..]
            .iter()
            .position(|l| l.trim() == "```toml")
            .unwrap_or_else(|| panic!("no ```toml block after `{after}`"));
    let close = open
        + lines[open..]
            .iter()
            .position(|l| l.trim() == "```")
            .expect("the ```toml block ends");
    (open + 2, lines[open + 1..close].join("\n"))
}

/// Every `section.key` of a config as TOML, with its value.
fn keys(table: &toml::Table) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    for (section, inner) in table {
        let inner = inner
            .as_table()
            .unwrap_or_else(|| panic!("`{section}` is not a section"));
        for (key, value) in inner {
            out.insert(format!("{section}.{key}"), value.clone());
        }
    }
    out
}

/// The config of a node that sets only what has no default, as TOML.
fn defaults() -> BTreeMap<String, toml::Value> {
    let identity = IdentityConfig {
        ca_cert: "ca.crt".into(),
        node_cert: "node.crt".into(),
        node_key: "node.key".into(),
    };
    let text = Config::new(identity, "127.0.0.1:30300").to_toml();
    keys(&text.parse().expect("to_toml writes TOML"))
}

/// The example, loaded as a node would, and as a TOML table.
fn example() -> (usize, String, Config) {
    let (line, text) = toml_block(DOC, "## An annotated example");
    let config = Config::parse(&text, Path::new("docs/config.md"))
        .unwrap_or_else(|e| panic!("docs/config.md:{line}: the example does not load: {e}"));
    (line, text, config)
}

#[test]
fn the_example_loads_and_sets_every_key() {
    let (line, text, config) = example();
    let example = keys(&text.parse().expect("the example is TOML"));
    let all = keys(&config.to_toml().parse().expect("to_toml writes TOML"));
    let missing: Vec<&String> = all.keys().filter(|k| !example.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "docs/config.md:{line}: the example leaves out {missing:?}"
    );
}

#[test]
fn the_example_shows_the_defaults_it_says_it_shows() {
    let (first, text, _) = example();
    let defaults = defaults();
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let (code, comment) = line.split_once('#').unwrap_or((line, ""));
        let code = code.trim();
        if let Some(name) = code.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if !comment.trim_start().starts_with("default") {
            continue;
        }
        let (key, _) = code.split_once('=').expect("a `# default` line sets a key");
        let key = format!("{section}.{}", key.trim());
        let shown: toml::Table = code.parse().expect("one key = value line");
        assert_eq!(
            shown.values().next(),
            defaults.get(&key),
            "docs/config.md:{}: `{key}` is marked as the default",
            first + i
        );
    }
}

#[test]
fn the_tables_name_every_key_with_its_default() {
    let defaults = defaults();
    let (_, _, config) = example();
    let all = keys(&config.to_toml().parse().expect("to_toml writes TOML"));
    for key in all.keys() {
        // A row of a section's table: key, type, default, valid values, SIGHUP, meaning.
        let row = DOC
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")) && l.split('|').count() == 8)
            .unwrap_or_else(|| panic!("docs/config.md has no table row for `{key}`"));
        let section = key.split('.').next().unwrap_or_default();
        assert!(
            DOC.contains(&format!("## `[{section}]`")),
            "docs/config.md has no heading for `[{section}]`"
        );
        // The default is the first code span in its cell, or the word "required".
        let default_cell = row.split('|').nth(3).unwrap_or_default().trim();
        match defaults.get(key) {
            _ if default_cell.starts_with("required") => {
                assert!(
                    ["identity.", "p2p.listen"]
                        .iter()
                        .any(|p| key.starts_with(p)),
                    "docs/config.md says `{key}` is required, but it has a default"
                );
            }
            Some(value) => {
                let span = default_cell
                    .split('`')
                    .nth(1)
                    .unwrap_or_else(|| panic!("`{key}`: no default in `{default_cell}`"));
                let shown: toml::Table = format!("v = {span}")
                    .parse()
                    .unwrap_or_else(|e| panic!("`{key}`: default `{span}` is not TOML: {e}"));
                assert_eq!(
                    shown.get("v"),
                    Some(value),
                    "docs/config.md: the default of `{key}`"
                );
            }
            None => panic!("docs/config.md gives `{key}` a default, but the code requires it"),
        }
    }
}

#[test]
fn the_readme_example_loads() {
    let (line, text) = toml_block(README, "## Config file");
    if let Err(e) = Config::parse(&text, Path::new("README.md")) {
        panic!("README.md:{line}: the config example does not load: {e}");
    }
}
