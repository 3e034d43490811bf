//! Rebuilds the binary whenever the built-in knowledge under cds-hooks/ changes,
//! since it is embedded at compile time, and whenever a migration is added or changed.

fn main() {
    println!("cargo:rerun-if-changed=cds-hooks");
    println!("cargo:rerun-if-changed=src/store/migrations");
    for entry in walk("cds-hooks") {
        println!("cargo:rerun-if-changed={entry}");
    }
}

fn walk(dir: &str) -> Vec<String> {
    let mut paths = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                paths.extend(walk(&path));
            }
            paths.push(path);
        }
    }
    paths
}
