//! Reads a policy set from disk: every `.pol` file under a directory, one `.pol` file, or the
//! sources of a bundle (`polctl build`), whose integrity is checked first.
//!
//! All file IO of the front end happens here, so `polctl-lang` stays pure.

use crate::exit::CliError;
use crate::output::ColorChoice;
use polctl_lang::diagnostic::render_human;
use polctl_lang::ir::PolicySet;
use polctl_lang::{compile, SourceSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The `.pol` files of a set: absolute-or-relative path on disk, and path within the set.
pub struct PolicyFiles {
    pub root: PathBuf,
    pub files: Vec<(PathBuf, String)>,
}

/// Finds the `.pol` files under `path` (recursively, skipping hidden directories and `target`),
/// sorted by their path within the set.
pub fn find_policy_files(path: &Path) -> Result<PolicyFiles, CliError> {
    let shown = path.display();
    let metadata = fs::metadata(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => CliError::new(format!("`{shown}` does not exist"))
            .with_help("pass the directory that holds the policy set's `.pol` files"),
        _ => CliError::read(path, &error),
    })?;
    if metadata.is_file() {
        if path.extension().and_then(|e| e.to_str()) != Some("pol") {
            return Err(
                CliError::new(format!("`{shown}` is not a `.pol` file or a directory"))
                    .with_help("pass a policy set directory, or a single `.pol` file"),
            );
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.to_string());
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok(PolicyFiles {
            root,
            files: vec![(path.to_path_buf(), name)],
        });
    }
    let mut files = Vec::new();
    walk(path, path, &mut files)?;
    files.sort_by(|a, b| a.1.cmp(&b.1));
    if files.is_empty() {
        return Err(CliError::new(format!("no `.pol` files under `{shown}`")).with_help(
            "a policy set is a directory of `.pol` files: one schema and any number of policies",
        ));
    }
    Ok(PolicyFiles {
        root: path.to_path_buf(),
        files,
    })
}

/// Files under `root` whose name ends with `suffix`, as `(path on disk, path in the set)`.
pub fn find_files_with_suffix(
    root: &Path,
    suffix: &str,
) -> Result<Vec<(PathBuf, String)>, CliError> {
    let mut files = Vec::new();
    if root.is_file() {
        return Ok(files);
    }
    walk_matching(
        root,
        root,
        &|name| name.ends_with(suffix),
        &mut files,
        &mut Vec::new(),
    )?;
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(PathBuf, String)>) -> Result<(), CliError> {
    walk_matching(
        root,
        dir,
        &|name| name.ends_with(".pol"),
        files,
        &mut Vec::new(),
    )
}

/// Walks `dir` for wanted files. Symbolic links to directories are followed (a release that
/// links the unchanged parts of a set, a monorepo that links shared policies), each real
/// directory at most once on the way down, so a link loop ends.
fn walk_matching(
    root: &Path,
    dir: &Path,
    wanted: &dyn Fn(&str) -> bool,
    files: &mut Vec<(PathBuf, String)>,
    ancestors: &mut Vec<PathBuf>,
) -> Result<(), CliError> {
    let real = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    if ancestors.contains(&real) {
        return Ok(());
    }
    ancestors.push(real);
    let result = walk_entries(root, dir, wanted, files, ancestors);
    ancestors.pop();
    result
}

fn walk_entries(
    root: &Path,
    dir: &Path,
    wanted: &dyn Fn(&str) -> bool,
    files: &mut Vec<(PathBuf, String)>,
    ancestors: &mut Vec<PathBuf>,
) -> Result<(), CliError> {
    let entries = fs::read_dir(dir)
        .map_err(|error| CliError::new(format!("cannot list `{}`: {error}", dir.display())))?;
    for entry in entries {
        let entry = entry
            .map_err(|error| CliError::new(format!("cannot list `{}`: {error}", dir.display())))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let file_type = entry
            .file_type()
            .map_err(|error| CliError::read(&path, &error))?;
        if file_type.is_dir() || (file_type.is_symlink() && path.is_dir()) {
            if !name.starts_with('.') && name != "target" {
                walk_matching(root, &path, wanted, files, ancestors)?;
            }
        } else if wanted(&name) && (file_type.is_file() || path.is_file()) {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((path, relative));
        }
    }
    Ok(())
}

/// Reads one file as UTF-8, with an error that names the first bad byte.
pub fn read_text(path: &Path) -> Result<String, CliError> {
    let bytes = fs::read(path).map_err(|error| CliError::read(path, &error))?;
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        let line = error.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        CliError::new(format!(
            "`{}` is not valid UTF-8 (line {line}, byte {offset})",
            path.display()
        ))
        .with_help("policy files are UTF-8 text; re-save the file as UTF-8")
    })
}

/// Loads a whole policy set into memory.
pub fn load_policy_set(path: &Path) -> Result<SourceSet, CliError> {
    if is_bundle(path) {
        return Ok(bundle_policy_set(path, &bundle_sources(path)?));
    }
    let found = find_policy_files(path)?;
    let mut files = Vec::with_capacity(found.files.len());
    for (disk_path, relative) in &found.files {
        files.push((relative.clone(), read_text(disk_path)?));
    }
    Ok(SourceSet::from_files(files).with_display_root(found.root.to_string_lossy()))
}

/// A test file as `(path to show, path in the set, text)`.
pub type TestFileText = (String, String, String);

/// The policy files of a bundle's sources as a set, shown as `BUNDLE:path`.
fn bundle_policy_set(path: &Path, sources: &[(String, String)]) -> SourceSet {
    let files = sources
        .iter()
        .filter(|(relative, _)| relative.ends_with(".pol"))
        .cloned()
        .collect::<Vec<_>>();
    SourceSet::from_files(files).with_display_root(format!("{}:", path.display()))
}

/// The test files of a bundle's sources, as [`load_test_files`] returns them.
fn bundle_test_files(path: &Path, sources: Vec<(String, String)>) -> Vec<TestFileText> {
    sources
        .into_iter()
        .filter(|(relative, _)| relative.ends_with(".test.toml"))
        .map(|(relative, text)| (format!("{}:{relative}", path.display()), relative, text))
        .collect()
}

/// A set and its test files, reading (and verifying) a bundle once.
pub fn load_set_and_tests(path: &Path) -> Result<(SourceSet, Vec<TestFileText>), CliError> {
    if is_bundle(path) {
        let sources = bundle_sources(path)?;
        let set = bundle_policy_set(path, &sources);
        return Ok((set, bundle_test_files(path, sources)));
    }
    Ok((load_policy_set(path)?, load_test_files(path)?))
}

/// A file given where a policy set is expected that is a bundle: named `.polb`, or starting
/// with the bundle magic (any other file is "not a `.pol` file or a directory").
pub fn is_bundle(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if path.extension().and_then(|e| e.to_str()) == Some("polb") {
        return true;
    }
    let magic = polctl_bundle::container::MAGIC;
    let mut head = vec![0; magic.len()];
    fs::File::open(path)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut head))
        .is_ok_and(|()| head == magic)
}

/// Every source file of a bundle (`.pol` and `*.test.toml`), by path within the set, after
/// checking the bundle's integrity (exit 4 if it fails).
pub fn bundle_sources(path: &Path) -> Result<Vec<(String, String)>, CliError> {
    let bytes = read_bytes(path)?;
    let bundle = polctl_bundle::open(&bytes).map_err(|error| {
        CliError::new(format!("`{}`: {error}", path.display()))
            .with_help(
                "pass a policy set directory, a `.pol` file, or an intact bundle written by `polctl build`",
            )
            .with_exit(crate::exit::Exit::Verification)
    })?;
    Ok(bundle.sources())
}

/// A set's test files (`*.test.toml`) as `(path to show, path in the set, text)`: from the
/// directory, or from the bundle's sources.
pub fn load_test_files(path: &Path) -> Result<Vec<TestFileText>, CliError> {
    if is_bundle(path) {
        return Ok(bundle_test_files(path, bundle_sources(path)?));
    }
    find_files_with_suffix(path, ".test.toml")?
        .into_iter()
        .map(|(disk, relative)| Ok((disk.display().to_string(), relative, read_text(&disk)?)))
        .collect()
}

/// Loads and compiles a set for a command that needs its IR. When the set does not compile,
/// its diagnostics are printed (with `json`, as the `findings` document of `check --format
/// json` on stdout) and `None` is returned (the command exits 2).
pub fn compile_or_report(
    path: &Path,
    color: ColorChoice,
    json: bool,
) -> Result<Option<(SourceSet, PolicySet)>, CliError> {
    compile_loaded_or_report(path, load_policy_set(path)?, color, json)
}

/// [`compile_or_report`] on a set already loaded from `path`.
pub fn compile_loaded_or_report(
    path: &Path,
    sources: SourceSet,
    color: ColorChoice,
    json: bool,
) -> Result<Option<(SourceSet, PolicySet)>, CliError> {
    let compilation = compile(&sources);
    match compilation.set {
        Some(set) => Ok(Some((sources, set))),
        None if json => {
            let findings: Vec<polctl_lang::diagnostic::JsonFinding> = compilation
                .diagnostics
                .iter()
                .map(|d| polctl_lang::diagnostic::JsonFinding::from_diagnostic(d, &sources))
                .collect();
            let document = serde_json::json!({
                "error": {
                    "message": format!("`{}` does not compile", path.display()),
                    "help": format!("run `polctl check {}`", path.display()),
                    "exit_code": 2,
                },
                "findings": findings,
            });
            crate::output::print_document(
                &serde_json::to_string_pretty(&document).unwrap_or_default(),
            );
            Ok(None)
        }
        None => {
            let color = color.enabled_for_stdout();
            for diagnostic in &compilation.diagnostics {
                println!("{}", render_human(diagnostic, &sources, color));
            }
            println!(
                "error: `{}` does not compile ({} error{}); run `polctl check {}`",
                path.display(),
                compilation.errors(),
                if compilation.errors() == 1 { "" } else { "s" },
                path.display()
            );
            Ok(None)
        }
    }
}

/// Replaces a file atomically: written beside it, then renamed, keeping an existing file's
/// permissions; nothing is left half-written if anything fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".polctl.tmp");
    let temporary = std::path::PathBuf::from(temporary);
    std::fs::write(&temporary, bytes)
        .and_then(|()| {
            if let Ok(metadata) = std::fs::metadata(path) {
                std::fs::set_permissions(&temporary, metadata.permissions())?;
            }
            std::fs::rename(&temporary, path)
        })
        .map_err(|error| {
            let _ = std::fs::remove_file(&temporary);
            CliError::write(path, &error)
        })
}

/// Reads a whole file, with an error that names it.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| CliError::read(path, &error))
}
