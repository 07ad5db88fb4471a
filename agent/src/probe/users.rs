//! Local user accounts from /etc/passwd: names, ids, home, shell. No password data is read.

use census_shared::{Section, User};

use super::ProbeError;

const NO_LOGIN_SHELLS: &[&str] = &["nologin", "false", "sync", "shutdown", "halt"];

pub fn is_login_shell(shell: &str) -> bool {
    let base = shell.rsplit('/').next().unwrap_or("");
    !shell.trim().is_empty() && !NO_LOGIN_SHELLS.contains(&base)
}

pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
            let full_name = f[4].split(',').next().and_then(opt);
            Some(User {
                name: f[0].to_string(),
                uid: f[2].parse().ok(),
                gid: f[3].parse().ok(),
                full_name,
                home: opt(f[5]),
                shell: opt(f[6]),
                login_shell: is_login_shell(f[6]),
            })
        })
        .collect()
}

#[cfg(unix)]
pub fn collect() -> Result<Section<Vec<User>>, ProbeError> {
    Ok(Section::collected(parse_passwd(&super::read_text(
        "/etc/passwd",
    )?)))
}

#[cfg(windows)]
pub fn collect() -> Result<Section<Vec<User>>, ProbeError> {
    Ok(Section::unsupported(
        "local user probe not implemented on Windows",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd() {
        let users = parse_passwd("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000:Alice Liddell,,,:/home/alice:/usr/bin/zsh\n+nis::::::\nbroken:x\nsvc:x:998:998::/var/lib/svc:\n");
        assert_eq!(users.len(), 4);
        assert!(users[0].login_shell);
        assert!(!users[1].login_shell);
        assert_eq!(users[2].full_name.as_deref(), Some("Alice Liddell"));
        assert_eq!(users[2].uid, Some(1000));
        assert!(!users[3].login_shell);
        assert_eq!(users[3].shell, None);
    }
}
