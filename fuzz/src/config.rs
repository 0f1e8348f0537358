//! The config file parser.

use std::path::Path;

use chainmesh::Config;

/// The input as config text (when it is UTF-8).
///
/// Checks: parsing gives a config or a typed error; a config that parses also validates, and
/// the text `to_toml` writes for it (what `chainmesh init` writes) parses back to the same
/// config.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.toml");
    if let Ok(cfg) = Config::parse(text, file) {
        assert!(cfg.validate(file).is_ok());
        let written = cfg.to_toml();
        match Config::parse(&written, file) {
            Ok(again) => assert_eq!(again, cfg, "to_toml changed the config"),
            Err(e) => panic!("to_toml wrote a config that does not parse: {e}\n{written}"),
        }
    }
}
