//! The optional `weir.toml` file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::settings::{ConfigError, SETTINGS};

/// A parsed configuration file: dotted keys to values, every key a known setting.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl ConfigFile {
    /// The default file, `weir.toml` in the working directory, read only when present.
    pub const DEFAULT_PATH: &'static str = "weir.toml";

    /// Reads and checks the file at `path`: it must be TOML whose every key is a setting.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
            path: path.to_path_buf(),
            message: format!("cannot be read: {error}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses file contents; `path` is only for messages.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|error| ConfigError::File {
            path: path.to_path_buf(),
            message: format!("is not valid TOML: {}", error.message()),
        })?;
        let mut values = BTreeMap::new();
        flatten(path, "", &table, &mut values)?;
        for key in values.keys() {
            if !SETTINGS.iter().any(|s| s.key == key) {
                let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
                return Err(ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    known: known.join(", "),
                });
            }
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            values,
        })
    }

    /// The value of a dotted key, as text.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn flatten(
    path: &Path,
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let text = match value {
            toml::Value::Table(inner) => {
                flatten(path, &key, inner, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            // A list of strings is the same as its items joined by commas:
            // `tokens = ["a:admin", "b:publish"]` reads as "a:admin,b:publish".
            toml::Value::Array(items) => {
                let strings: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
                match strings {
                    // Schedules hold cron lists (`0,30 * * * *`): they are joined by `;`.
                    Some(strings) => strings.join(if key == "jobs.schedules" { ";" } else { "," }),
                    None => {
                        return Err(ConfigError::File {
                            path: path.to_path_buf(),
                            message: format!("{key} must be a single value or a list of strings"),
                        })
                    }
                }
            }
        };
        out.insert(key, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tables_as_dotted_keys() {
        let file = ConfigFile::parse(
            Path::new("weir.toml"),
            "data_dir = \"/var/lib/weir\"\n[http]\naddr = \"0.0.0.0:80\"\nmax_connections = 50\n",
        )
        .unwrap();
        assert_eq!(file.get("http.addr"), Some("0.0.0.0:80"));
        assert_eq!(file.get("http.max_connections"), Some("50"));
        assert_eq!(file.get("data_dir"), Some("/var/lib/weir"));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_toml() {
        let unknown =
            ConfigFile::parse(Path::new("w.toml"), "[http]\nadress = \"x\"\n").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown key \"http.adress\""),
            "{unknown}"
        );
        assert!(unknown.to_string().contains("http.addr"));
        let bad = ConfigFile::parse(Path::new("w.toml"), "http = [").unwrap_err();
        assert!(bad.to_string().contains("is not valid TOML"), "{bad}");
    }
}
