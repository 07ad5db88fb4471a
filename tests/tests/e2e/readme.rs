//! Every command the README shows is one its binary accepts as written (the README's
//! `census ci show cmp_… --as-of -30d` was once refused by the argument parser).

use std::process::Command;

use crate::support::bin;

const BINARIES: [&str; 3] = ["census-collector", "census-agent", "census"];

/// Words of a shell command line: single and double quotes group, a `#` comment and an
/// output redirection end it.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '#' | '>') if !in_word => break,
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// (binary, arguments) of every README code-block line that runs one of ours, after a
/// pipe if there is one.
fn readme_commands() -> Vec<(String, Vec<String>)> {
    let readme = include_str!("../../../README.md");
    let mut in_code = false;
    let mut out = Vec::new();
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let command = line.rsplit('|').next().unwrap_or(line);
        let w = words(command.trim().trim_start_matches("sudo "));
        if let Some((first, rest)) = w.split_first() {
            let name = first.rsplit('/').next().unwrap_or(first);
            if BINARIES.contains(&name) {
                out.push((name.to_string(), rest.to_vec()));
            }
        }
    }
    out
}

#[test]
fn words_split_as_a_shell_does() {
    assert_eq!(
        words("census software where openssl '<3.0.7'   # comment"),
        ["census", "software", "where", "openssl", "<3.0.7"]
    );
    assert_eq!(
        words("census -o csv ci list --fields id,name > assets.csv"),
        ["census", "-o", "csv", "ci", "list", "--fields", "id,name"]
    );
}

#[test]
fn every_command_in_the_readme_is_accepted_as_written() {
    let commands = readme_commands();
    assert!(commands.len() >= 15, "README commands found: {commands:?}");
    for (name, args) in &commands {
        // `--help` after a complete command line: the parser checks every argument before
        // it and nothing runs. An argument it refuses is an error, and a non-zero exit.
        let out = Command::new(bin(name))
            .args(args)
            .arg("--help")
            .env("CENSUS_CONFIG", "/nonexistent")
            .output()
            .unwrap_or_else(|e| panic!("run {name}: {e}"));
        assert!(
            out.status.success(),
            "`{name} {}` is refused as the README writes it: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
