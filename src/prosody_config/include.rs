//! `Include "path"`: one file, or a glob (`*`, `?`) over the last path component;
//! relative paths resolve against the including file's directory. Bounded: at most
//! [`MAX_INCLUDE_DEPTH`] files deep, [`MAX_FILES`] files in all, [`MAX_FILE_SIZE`]
//! bytes per file, and a file that is already being read is a cycle.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::load::Loader;
use super::parse::syntax;
use super::ProsodyConfigError;

const MAX_INCLUDE_DEPTH: usize = 16;
const MAX_FILES: usize = 256;
const MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

impl Loader {
    /// Reads and parses the file at `path`, included from `from` (`None` for the main
    /// file) at Include depth `depth`.
    pub(super) fn load_file(
        &mut self,
        path: &Path,
        from: Option<(&Path, usize)>,
        depth: usize,
    ) -> Result<(), ProsodyConfigError> {
        let canonical = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some((from_file, from_line)) = from {
            if depth > MAX_INCLUDE_DEPTH {
                return Err(syntax(
                    from_file,
                    from_line,
                    format!("Include nesting deeper than {MAX_INCLUDE_DEPTH} files"),
                ));
            }
            if self.files_read >= MAX_FILES {
                return Err(syntax(
                    from_file,
                    from_line,
                    format!("more than {MAX_FILES} files included"),
                ));
            }
            if self.stack.contains(&canonical) {
                return Err(syntax(
                    from_file,
                    from_line,
                    format!("Include cycle: {} is already being read", path.display()),
                ));
            }
        }
        let bytes = read_limited(path).map_err(|source| ProsodyConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        self.files_read += 1;
        self.stack.push(canonical);
        let result = self.parse_file(&bytes, path, depth);
        self.stack.pop();
        result
    }

    /// `Include "spec"` at `file:line`, in a file at Include depth `depth`.
    pub(super) fn include(
        &mut self,
        spec: &[u8],
        file: &Path,
        line: usize,
        depth: usize,
    ) -> Result<(), ProsodyConfigError> {
        let spec = include_spec(spec, file, line)?;
        let base = file.parent().unwrap_or_else(|| Path::new(""));
        let from = Some((file, line));
        if !spec.contains(['*', '?']) {
            return self.load_file(&resolve(base, spec), from, depth + 1);
        }
        let (dir, pattern) = glob_parts(spec, base, file, line)?;
        for name in self.glob(&dir, pattern, spec, file, line)? {
            self.load_file(&dir.join(name), from, depth + 1)?;
        }
        Ok(())
    }

    /// The names in `dir` matching `pattern`, in byte order; dot files and
    /// directories are skipped (the latter with a warning). A directory that does not
    /// exist matches nothing, with a warning.
    fn glob(
        &mut self,
        dir: &Path,
        pattern: &str,
        spec: &str,
        file: &Path,
        line: usize,
    ) -> Result<Vec<String>, ProsodyConfigError> {
        let listed = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        let entries = match fs::read_dir(&listed) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warn(
                    file,
                    line,
                    format!(
                        "Include \"{spec}\": directory {} does not exist, nothing included \
                         (Prosody would refuse to start)",
                        listed.display()
                    ),
                );
                return Ok(Vec::new());
            }
            Err(source) => {
                return Err(ProsodyConfigError::Io {
                    file: listed,
                    source,
                })
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ProsodyConfigError::Io {
                file: listed.clone(),
                source,
            })?;
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                self.warn(
                    file,
                    line,
                    format!(
                        "Include \"{spec}\": skipping {} (name is not valid UTF-8)",
                        entry.path().display()
                    ),
                );
                continue;
            };
            if name.starts_with('.') || !glob_match(pattern, name) {
                continue;
            }
            let path = dir.join(name);
            if fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                self.warn(
                    file,
                    line,
                    format!("Include \"{spec}\": skipping directory {}", path.display()),
                );
                continue;
            }
            names.push(name.to_string());
        }
        names.sort();
        Ok(names)
    }
}

/// The Include's path: UTF-8, not empty, a leading `./` removed.
fn include_spec<'a>(
    spec: &'a [u8],
    file: &Path,
    line: usize,
) -> Result<&'a str, ProsodyConfigError> {
    let spec = std::str::from_utf8(spec)
        .map_err(|_| syntax(file, line, "Include path is not valid UTF-8"))?;
    let spec = match spec.strip_prefix("./") {
        Some(rest) => rest.trim_start_matches('/'),
        None => spec,
    };
    if spec.is_empty() {
        return Err(syntax(file, line, "Include needs a file name"));
    }
    Ok(spec)
}

/// A glob's directory (resolved against `base`) and its pattern (the last path
/// component, the only one that may hold wildcards).
fn glob_parts<'a>(
    spec: &'a str,
    base: &Path,
    file: &Path,
    line: usize,
) -> Result<(PathBuf, &'a str), ProsodyConfigError> {
    let (dir_part, pattern) = match spec.rfind('/') {
        Some(0) => ("/", spec.get(1..).unwrap_or_default()),
        Some(i) => (
            spec.get(..i).unwrap_or_default(),
            spec.get(i + 1..).unwrap_or_default(),
        ),
        None => ("", spec),
    };
    if pattern.is_empty() {
        return Err(syntax(
            file,
            line,
            format!("Include \"{spec}\": the pattern has no file name part"),
        ));
    }
    if dir_part.contains(['*', '?']) {
        return Err(syntax(
            file,
            line,
            format!("Include \"{spec}\": wildcards are only supported in the last path component"),
        ));
    }
    let dir = if dir_part.is_empty() {
        base.to_path_buf()
    } else {
        resolve(base, dir_part)
    };
    Ok((dir, pattern))
}

/// Shell-style match of one name: `*` any run of characters, `?` one character.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == n.get(ni) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&'*') {
        pi += 1;
    }
    pi == p.len()
}

/// The file's bytes, at most [`MAX_FILE_SIZE`] of them (beyond that, an error).
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("file larger than {MAX_FILE_SIZE} bytes"),
        ));
    }
    Ok(bytes)
}

/// Prosody's `resolve_relative_path` (after stripping a leading `./`).
fn resolve(base: &Path, path: &str) -> PathBuf {
    if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prosody_config::testing::*;

    #[test]
    fn each_file_starts_in_the_global_section_and_resumes_its_own() {
        let dir = TempDir::new("scope");
        dir.write(
            "inc.cfg.lua",
            "component_secret = \"global-from-include\"\nComponent \"b.example.com\"\n",
        );
        let main = dir.write(
            "main.cfg.lua",
            "VirtualHost \"example.com\"\nComponent \"a.example.com\"\nInclude \"inc.cfg.lua\"\n\
             enabled = false\n",
        );
        let c = load(&main).expect("load");
        let a = comp(&c, "a.example.com");
        assert_eq!(
            (a.secret.as_deref(), a.enabled),
            (Some("global-from-include"), false)
        );
        let b = comp(&c, "b.example.com");
        assert_eq!(
            (b.secret.as_deref(), b.enabled),
            (Some("global-from-include"), true)
        );
    }

    // --- Include ----------------------------------------------------------------------------

    #[test]
    fn include_across_files() {
        let dir = TempDir::new("include");
        dir.write(
            "conf.d/10-a.cfg.lua",
            "VirtualHost \"example.com\"\nComponent \"a.example.com\"\ncomponent_secret = \"a\"\n",
        );
        dir.write(
            "conf.d/20-b.cfg.lua",
            "Component \"b.example.com\"\ncomponent_secret = \"b\"\nInclude \"sub/c.lua\"\n",
        );
        dir.write("conf.d/sub/c.lua", "Component \"c.example.com\"\n");
        dir.write(
            "conf.d/.hidden.cfg.lua",
            "Component \"hidden.example.com\"\n",
        );
        dir.write("conf.d/notes.txt", "Component \"txt.example.com\"\n");
        fs::create_dir_all(dir.0.join("conf.d/dir.cfg.lua")).expect("mkdir");
        dir.write("other/x.cfg.lua", "Component \"x.example.com\"\n");
        let main = dir.write(
            "prosody.cfg.lua",
            "component_secret = \"global\"\n\
             Include \"conf.d/*.cfg.lua\"\n\
             include './other/x.cfg.lua'\n\
             Component \"z.example.com\"\n",
        );
        let other_abs = dir.0.join("other/x.cfg.lua");
        let abs = dir.write(
            "abs.cfg.lua",
            &format!("Include \"{}\"\n", other_abs.display()),
        );

        let c = load(&main).expect("load");
        assert_eq!(
            domains(&c),
            [
                "a.example.com",
                "b.example.com",
                "c.example.com",
                "x.example.com",
                "z.example.com"
            ]
        );
        assert_eq!(secret(&c, "a.example.com").as_deref(), Some("a"));
        assert_eq!(secret(&c, "c.example.com").as_deref(), Some("global"));
        let a = comp(&c, "a.example.com");
        assert_eq!(
            (a.file.clone(), a.line),
            (dir.0.join("conf.d/10-a.cfg.lua"), 2)
        );
        let cc = comp(&c, "c.example.com");
        assert_eq!(
            (cc.file.clone(), cc.line),
            (dir.0.join("conf.d/sub/c.lua"), 1)
        );
        assert_eq!(comp(&c, "z.example.com").file, main);
        assert!(
            c.warnings.iter().any(|w| w.contains("skipping directory")),
            "{:?}",
            c.warnings
        );

        // parse_str resolves relative to the given file's directory.
        let text = fs::read_to_string(&main).expect("read");
        assert_eq!(
            domains(&parse_str(&text, &main).expect("parse")),
            domains(&c)
        );
        // Absolute paths.
        assert_eq!(domains(&load(&abs).expect("load abs")), ["x.example.com"]);
    }

    #[test]
    fn include_glob_matching_nothing_is_fine() {
        let dir = TempDir::new("empty-glob");
        fs::create_dir_all(dir.0.join("conf.d")).expect("mkdir");
        let main = dir.write(
            "p.cfg.lua",
            "Include \"conf.d/*.cfg.lua\"\nComponent \"a.b\"\n",
        );
        let c = load(&main).expect("load");
        assert_eq!(domains(&c), ["a.b"]);
        assert!(
            c.warnings.iter().all(|w| !w.contains("Include")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn include_glob_in_missing_directory_warns() {
        assert_warns("\nInclude \"conf.d/*.cfg.lua\"\n", 2, "does not exist");
    }

    #[test]
    fn include_missing_file_is_an_io_error() {
        let dir = TempDir::new("missing");
        let main = dir.write("p.cfg.lua", "Include \"nope.cfg.lua\"\n");
        let e = load(&main).expect_err("must fail");
        assert!(matches!(e, ProsodyConfigError::Io { .. }), "{e:?}");
        assert_eq!(e.file(), dir.0.join("nope.cfg.lua"));
        assert_eq!(e.line(), None);
        let e = load(&dir.0.join("absent.cfg.lua")).expect_err("must fail");
        assert!(matches!(e, ProsodyConfigError::Io { .. }), "{e:?}");
    }

    #[test]
    fn include_errors_name_the_included_file() {
        let dir = TempDir::new("inc-err");
        let bad = dir.write("bad.cfg.lua", "\nComponent \"a.example.com\"\nx = y\n");
        let main = dir.write("p.cfg.lua", "Include \"bad.cfg.lua\"\n");
        let e = load(&main).expect_err("must fail");
        assert_eq!((e.file(), e.line()), (bad.as_path(), Some(3)));
    }

    #[test]
    fn include_cycles_are_errors() {
        let dir = TempDir::new("cycle");
        let main = dir.write("self.cfg.lua", "x = 1\nInclude \"self.cfg.lua\"\n");
        let e = load(&main).expect_err("must fail");
        assert_eq!((e.file(), e.line()), (main.as_path(), Some(2)));
        assert!(e.to_string().contains("Include cycle"), "{e}");

        let a = dir.write("a.cfg.lua", "Include \"b.cfg.lua\"\n");
        let b = dir.write("b.cfg.lua", "\nInclude \"*.cfg.lua\"\n");
        let e = load(&a).expect_err("must fail");
        assert_eq!((e.file(), e.line()), (b.as_path(), Some(2)));
        assert!(e.to_string().contains("Include cycle"), "{e}");
        // parse_str knows its own file too.
        let e = parse_str("Include \"self.cfg.lua\"\n", &main).expect_err("must fail");
        assert!(e.to_string().contains("Include cycle"), "{e}");
    }

    #[test]
    fn include_depth_is_limited() {
        let dir = TempDir::new("depth");
        for i in 0..40 {
            dir.write(
                &format!("f{i}.lua"),
                &format!("Include \"f{}.lua\"\n", i + 1),
            );
        }
        dir.write("f40.lua", "Component \"deep.example.com\"\n");
        let e = load(&dir.0.join("f0.lua")).expect_err("must fail");
        assert!(e.to_string().contains("Include nesting deeper"), "{e}");
        // 10 levels are fine.
        let c = load(&dir.0.join("f30.lua")).expect("load");
        assert_eq!(domains(&c), ["deep.example.com"]);
    }

    #[test]
    fn include_rejects_wildcards_in_directories() {
        assert_err("Include \"conf.*/x.lua\"\n", 1, "last path component");
        // Not a wildcard: the directory itself cannot be read as a file.
        let e = parse_err("Include \"conf.d/\"\n");
        assert!(matches!(e, ProsodyConfigError::Io { .. }), "{e:?}");
        assert_err("Include \"\"\n", 1, "needs a file name");
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("*.cfg.lua", "localhost.cfg.lua"));
        assert!(glob_match("*.cfg.lua", ".cfg.lua"));
        assert!(!glob_match("*.cfg.lua", "localhost.cfg.lua.bak"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("f?.lua", "f1.lua"));
        assert!(!glob_match("f?.lua", "f12.lua"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("**x", "x"));
        assert!(!glob_match("", "x"));
    }

    // --- fixtures ---------------------------------------------------------------------------
}
