fn main() {
    let path = std::env::args().nth(1).expect("path");
    let text = std::fs::read_to_string(&path).expect("read");
    match polctl_lang::format::format_source(&text) {
        Ok(out) => print!("{out}"),
        Err(e) => println!("{} errors", e.len()),
    }
}
