fn main() {
    let path = std::env::args().nth(1).expect("path");
    let text = std::fs::read_to_string(&path).expect("read");
    let sources = polctl_lang::SourceSet::from_files([(path.clone(), text)]);
    let c = polctl_lang::compile(&sources);
    for d in &c.diagnostics {
        print!(
            "{}",
            polctl_lang::diagnostic::render_human(d, &sources, false)
        );
    }
    if let Some(set) = &c.set {
        print!("{}", polctl_lang::display::dump(set));
    }
}
