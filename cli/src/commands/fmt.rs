//! `polctl fmt PATH`: rewrites `.pol` files in the canonical layout.
//!
//! Files are replaced atomically (written beside the original, then renamed), and a file with
//! syntax errors is never touched, so an interrupted or failed run loses nothing.

use crate::exit::{CliError, Exit};
use crate::load::{find_policy_files, read_text, write_atomically};
use crate::output::{plural, ColorChoice};
use clap::Args;
use polctl_lang::diagnostic::render_human;
use polctl_lang::format::format_source;
use polctl_lang::SourceSet;
use std::path::PathBuf;

/// Format `.pol` files in one canonical layout, keeping comments.
///
/// With --check, changes nothing: lists the files that would change and exits 1 if there are
/// any. Files with syntax errors are reported and left as they are (exit 2).
#[derive(Args)]
pub struct FmtArgs {
    /// A directory of `.pol` files (searched recursively), or one `.pol` file.
    path: PathBuf,
    /// Only report files that are not formatted; exit 1 if there are any.
    #[arg(long)]
    check: bool,
    /// When to colour error output.
    #[arg(long, value_enum, default_value_t)]
    color: ColorChoice,
}

pub fn run(args: FmtArgs) -> Result<Exit, CliError> {
    let found = find_policy_files(&args.path)?;
    let mut changed = Vec::new();
    let mut broken = 0;
    for (disk_path, relative) in &found.files {
        let text = read_text(disk_path)?;
        match format_source(&text) {
            Ok(formatted) if formatted == text => {}
            Ok(formatted) => {
                if !args.check {
                    write_atomically(disk_path, formatted.as_bytes())?;
                }
                changed.push(disk_path.display().to_string());
            }
            Err(errors) => {
                broken += 1;
                let mut sources = SourceSet::new().with_display_root(found.root.to_string_lossy());
                sources.add(relative.clone(), text);
                for error in &errors {
                    println!(
                        "{}",
                        render_human(error, &sources, args.color.enabled_for_stdout())
                    );
                }
            }
        }
    }
    for path in &changed {
        if args.check {
            println!("would reformat {path}");
        } else {
            println!("formatted {path}");
        }
    }
    let total = found.files.len();
    if args.check && !changed.is_empty() {
        println!(
            "{} of {} would be reformatted; run `polctl fmt {}`",
            plural(changed.len(), "file"),
            total,
            args.path.display()
        );
    } else if changed.is_empty() && broken == 0 {
        println!("{} already formatted", plural(total, "file"));
    }
    if broken > 0 {
        println!(
            "{} not formatted because of syntax errors",
            plural(broken, "file")
        );
        return Ok(Exit::Findings);
    }
    Ok(if args.check && !changed.is_empty() {
        Exit::Usage
    } else {
        Exit::Success
    })
}
