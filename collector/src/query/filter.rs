//! The filter language: small, documented, parsed into a typed AST and evaluated by code —
//! never turned into a query string.
//!
//! ```text
//! filter := or
//! or     := and ("or" and)*
//! and    := unary ("and" unary)*
//! unary  := "not" unary | "(" or ")" | cond
//! cond   := FIELD OP VALUE | FIELD "in" CIDR | FIELD "exists"
//! OP     := "=" | "!=" | "^=" (prefix) | "~" (regex) | "<" | "<=" | ">" | ">="
//! VALUE  := "double-quoted string" | bare word (letters, digits, . - _ : / + ~ @)
//! FIELD  := id | name | class | status | first_seen | last_seen | ip
//!         | software.name | software.version | software.source | software.arch
//!         | software.publisher | any attribute path (os.hostname, memory.total_bytes, ...)
//! ```
//!
//! Comparisons: `software.version` orders with the package's own scheme (dpkg, rpm, or
//! generic); numbers compare numerically; `first_seen`/`last_seen` take RFC 3339 times,
//! dates (`2026-11-01`) or ages (`-7d`: seven days ago); `ip in 10.1.0.0/16` is subnet
//! containment over the computer's addresses. Within one `and` chain every `software.*`
//! condition binds to the same package: `software.name = "openssl" and software.version <
//! "3.0.7"` means one openssl package below 3.0.7.

use std::fmt;

use crate::drift::rules::Cidr;
use crate::model::{attributes, CiClass};

/// Limits that keep a filter cheap to parse and evaluate.
pub const MAX_FILTER_BYTES: usize = 4096;
pub const MAX_CONDITIONS: usize = 64;
pub const MAX_REGEX_BYTES: usize = 256;
pub const MAX_NESTING: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Id,
    Name,
    Class,
    Status,
    FirstSeen,
    LastSeen,
    Ip,
    Software(SoftwareField),
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftwareField {
    Name,
    Version,
    Source,
    Arch,
    Publisher,
}

impl SoftwareField {
    pub const ALL: [SoftwareField; 5] = [
        SoftwareField::Name,
        SoftwareField::Version,
        SoftwareField::Source,
        SoftwareField::Arch,
        SoftwareField::Publisher,
    ];

    pub fn edge_key(self) -> &'static str {
        match self {
            SoftwareField::Name => "name",
            SoftwareField::Version => "version",
            SoftwareField::Source => "source",
            SoftwareField::Arch => "arch",
            SoftwareField::Publisher => "publisher",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Prefix,
    Regex,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub enum Cond {
    Compare {
        field: Field,
        op: Op,
        value: String,
        /// Compiled once at parse time for `~`.
        regex: Option<regex::Regex>,
    },
    In {
        field: Field,
        cidr: Cidr,
    },
    Exists(Field),
}

impl Cond {
    pub fn field(&self) -> &Field {
        match self {
            Cond::Compare { field, .. } | Cond::In { field, .. } | Cond::Exists(field) => field,
        }
    }
    pub fn is_software(&self) -> bool {
        matches!(self.field(), Field::Software(_))
    }
}

#[derive(Debug, Clone)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cond(Cond),
}

impl Expr {
    /// Whether any condition, at any depth, satisfies `test`.
    pub fn any_condition(&self, test: &dyn Fn(&Cond) -> bool) -> bool {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().any(|e| e.any_condition(test)),
            Expr::Not(e) => e.any_condition(test),
            Expr::Cond(c) => test(c),
        }
    }
    pub fn mentions_software(&self) -> bool {
        self.any_condition(&Cond::is_software)
    }
    pub fn mentions_ip(&self) -> bool {
        self.any_condition(&|c| *c.field() == Field::Ip)
    }
    /// Whether the result can change with the clock or a heartbeat alone (first and last
    /// seen, compared with ages such as `-7d`), not only when the CI's record does.
    pub fn mentions_seen_times(&self) -> bool {
        self.any_condition(&|c| matches!(c.field(), Field::FirstSeen | Field::LastSeen))
    }
    /// A package name every match must install, when the top level says so: the query
    /// can start from that product's installs instead of scanning every computer.
    pub fn required_software_name(&self) -> Option<&str> {
        fn is_name_eq(e: &Expr) -> Option<&str> {
            match e {
                Expr::Cond(Cond::Compare {
                    field: Field::Software(SoftwareField::Name),
                    op: Op::Eq,
                    value,
                    ..
                }) => Some(value.as_str()),
                _ => None,
            }
        }
        match self {
            Expr::And(v) => v.iter().find_map(is_name_eq),
            other => is_name_eq(other),
        }
    }
}

/// A parse error with the byte offset it happened at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl std::error::Error for FilterError {}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "filter at position {}: {}", self.position, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(Op),
    LParen,
    RParen,
}

fn lex(input: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let err = |position, message: &str| FilterError {
        position,
        message: message.into(),
    };
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((i, Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push((i, Tok::RParen));
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                let mut s = String::new();
                loop {
                    match input[i..].chars().next() {
                        None => return Err(err(start, "unterminated string")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let next = input[i + 1..].chars().next();
                            match next {
                                Some(ch @ ('"' | '\\')) => {
                                    s.push(ch);
                                    i += 2;
                                }
                                _ => return Err(err(i, "only \\\" and \\\\ escapes are allowed")),
                            }
                        }
                        Some(ch) => {
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            b'=' => {
                out.push((i, Tok::Op(Op::Eq)));
                i += 1;
            }
            b'~' => {
                out.push((i, Tok::Op(Op::Regex)));
                i += 1;
            }
            b'!' | b'^' | b'<' | b'>' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    (b'!', true) => Op::Ne,
                    (b'^', true) => Op::Prefix,
                    (b'<', true) => Op::Le,
                    (b'>', true) => Op::Ge,
                    (b'<', false) => Op::Lt,
                    (b'>', false) => Op::Gt,
                    _ => return Err(err(i, "expected an operator (= != ^= ~ < <= > >=)")),
                };
                out.push((i, Tok::Op(op)));
                i += if two { 2 } else { 1 };
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"._-:/+@*".contains(&bytes[i]))
                {
                    i += 1;
                }
                if i == start {
                    let ch = input[i..].chars().next().unwrap_or(' ');
                    return Err(err(i, &format!("unexpected character '{ch}'")));
                }
                out.push((start, Tok::Word(input[start..i].to_string())));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    conditions: usize,
    depth: usize,
    /// The class the filter will run on: attribute paths are resolved against its
    /// registered attributes (`model::attributes`), so a typo is an error, not an empty page.
    class: Option<CiClass>,
}

fn field_of(name: &str) -> Option<Field> {
    Some(match name {
        "id" => Field::Id,
        "name" => Field::Name,
        "class" => Field::Class,
        "status" => Field::Status,
        "first_seen" => Field::FirstSeen,
        "last_seen" => Field::LastSeen,
        "ip" => Field::Ip,
        other if other.starts_with("software.") => {
            let key = &other["software.".len()..];
            return SoftwareField::ALL
                .into_iter()
                .find(|f| f.edge_key() == key)
                .map(Field::Software);
        }
        other
            if other.contains('.')
                && other
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') =>
        {
            Field::Attribute(other.to_string())
        }
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(p, _)| *p).unwrap_or(self.end)
    }
    /// An unknown field: the fields there are, and for a known class its attributes and the
    /// one a typo most likely meant.
    fn unknown<T>(&self, name: &str) -> Result<T, FilterError> {
        let builtin = "id, name, class, status, first_seen, last_seen, ip, software.name|version|source|arch|publisher";
        match self.class {
            Some(class) => {
                let hint = attributes::closest(class, name)
                    .map(|p| format!(" (did you mean {p}?)"))
                    .unwrap_or_default();
                let known: Vec<&str> = attributes::of(class).iter().map(|a| a.path).collect();
                self.err(format!(
                    "unknown field '{name}'{hint}; fields are {builtin}, or an attribute of {}: {}",
                    class.as_str(),
                    known.join(", ")
                ))
            }
            None => self.err(format!(
                "unknown field '{name}'; fields are {builtin}, or an attribute path like os.hostname"
            )),
        }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            position: self.at(),
            message: message.into(),
        })
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut parts = vec![self.unary()?];
        while self.keyword("and") {
            self.pos += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("not") {
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return self.err(format!("'not' nested deeper than {MAX_NESTING}"));
            }
            self.pos += 1;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return self.err(format!("parentheses nested deeper than {MAX_NESTING}"));
            }
            self.pos += 1;
            let e = self.or()?;
            self.depth -= 1;
            if self.peek() != Some(&Tok::RParen) {
                return self.err("expected ')'");
            }
            self.pos += 1;
            return Ok(e);
        }
        self.cond().map(Expr::Cond)
    }

    fn cond(&mut self) -> Result<Cond, FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return self.err(format!("more than {MAX_CONDITIONS} conditions"));
        }
        let Some(Tok::Word(name)) = self.peek().cloned() else {
            return self.err("expected a field name");
        };
        let field = match field_of(&name) {
            Some(Field::Attribute(path)) => match self.class {
                Some(class) if attributes::find(class, &path).is_none() => {
                    return self.unknown(&name);
                }
                _ => Field::Attribute(path),
            },
            Some(f) => f,
            // A component's attributes have plain names (`size_bytes`).
            None => match self.class {
                Some(class) if attributes::find(class, &name).is_some() => {
                    Field::Attribute(name.clone())
                }
                _ => return self.unknown(&name),
            },
        };
        self.pos += 1;
        if self.keyword("exists") {
            self.pos += 1;
            return Ok(Cond::Exists(field));
        }
        if self.keyword("in") {
            self.pos += 1;
            if field != Field::Ip {
                return self.err("'in' takes a CIDR and only applies to ip");
            }
            let value_at = self.at();
            let text = match self.peek().cloned() {
                Some(Tok::Word(w) | Tok::Str(w)) => w,
                _ => return self.err("expected a CIDR like 10.1.0.0/16"),
            };
            let cidr = Cidr::parse(&text).map_err(|m| FilterError {
                position: value_at,
                message: m,
            })?;
            self.pos += 1;
            return Ok(Cond::In { field, cidr });
        }
        let Some(Tok::Op(op)) = self.peek().cloned() else {
            return self.err(format!(
                "expected an operator after '{name}' (= != ^= ~ < <= > >=, in, exists)"
            ));
        };
        self.pos += 1;
        let value_at = self.at();
        let value = match self.peek().cloned() {
            Some(Tok::Word(w) | Tok::Str(w)) => w,
            _ => return self.err("expected a value"),
        };
        self.pos += 1;
        let regex = if op == Op::Regex {
            if value.len() > MAX_REGEX_BYTES {
                return Err(FilterError {
                    position: value_at,
                    message: format!("regex longer than {MAX_REGEX_BYTES} bytes"),
                });
            }
            Some(
                regex::RegexBuilder::new(&value)
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20)
                    .build()
                    .map_err(|e| FilterError {
                        position: value_at,
                        message: format!("invalid regex: {e}"),
                    })?,
            )
        } else {
            None
        };
        if matches!(field, Field::Ip) && op != Op::Eq && op != Op::Ne && op != Op::Prefix {
            return Err(FilterError {
                position: value_at,
                message: "ip takes =, !=, ^= or in CIDR".into(),
            });
        }
        Ok(Cond::Compare {
            field,
            op,
            value,
            regex,
        })
    }
}

/// Parses a filter. An empty filter is `None` (everything matches).
/// Parses a filter for CIs of `class`: attribute paths must be that class's registered
/// attributes (plain names such as `size_bytes` work for components too).
pub fn parse_for(class: CiClass, input: &str) -> Result<Option<Expr>, FilterError> {
    parse_with(input, Some(class))
}

/// Parses a filter without knowing its class (any dotted path is an attribute).
pub fn parse(input: &str) -> Result<Option<Expr>, FilterError> {
    parse_with(input, None)
}

fn parse_with(input: &str, class: Option<CiClass>) -> Result<Option<Expr>, FilterError> {
    if input.len() > MAX_FILTER_BYTES {
        return Err(FilterError {
            position: MAX_FILTER_BYTES,
            message: format!("filter longer than {MAX_FILTER_BYTES} bytes"),
        });
    }
    let toks = lex(input)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: input.len(),
        conditions: 0,
        depth: 0,
        class,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return p.err("expected 'and', 'or' or the end of the filter");
    }
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_software_field_is_part_of_a_package_variant() {
        // A package query evaluates software conditions on the store's variants, which
        // carry only these keys: a field outside them would silently never match.
        let fields = super::SoftwareField::ALL.map(super::SoftwareField::edge_key);
        assert_eq!(fields, crate::store::PACKAGE_VARIANT_KEYS);
    }

    use super::*;

    fn fails_at(input: &str) -> (usize, String) {
        let e = parse(input).unwrap_err();
        (e.position, e.message)
    }

    #[test]
    fn parses_the_documented_forms() {
        let e = parse(r#"software.name = "openssl" and software.version < "3.0.7""#)
            .unwrap()
            .unwrap();
        assert_eq!(e.required_software_name(), Some("openssl"));
        assert!(e.mentions_software());
        let e = parse("ip in 10.1.0.0/16 or (os.hostname ^= web and not status = retired)")
            .unwrap()
            .unwrap();
        assert!(matches!(e, Expr::Or(ref v) if v.len() == 2));
        assert!(e.mentions_ip());
        assert!(parse("last_seen < -7d").unwrap().is_some());
        assert!(parse("system.serial exists").unwrap().is_some());
        assert!(parse("os.hostname ~ \"^db[0-9]+$\"").unwrap().is_some());
        assert!(parse("   ").unwrap().is_none());
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(fails_at("os.hostname = ").0, 14);
        let (pos, msg) = fails_at("hostname = x");
        assert_eq!(pos, 0);
        assert!(msg.starts_with("unknown field 'hostname'"), "{msg}");
        assert_eq!(fails_at("os.hostname = x and").0, 19);
        assert_eq!(fails_at("ip in 10.0.0.0/40").0, 6);
        assert_eq!(fails_at("(os.hostname = x").0, 16);
        assert_eq!(fails_at("os.hostname ~ \"(\"").0, 14);
        assert_eq!(fails_at("os.hostname = \"open").0, 14);
        assert_eq!(fails_at("os.hostname = x y").0, 16);
        assert_eq!(fails_at("software.colour = red").0, 0);
        assert!(fails_at("os.hostname ! x").1.contains("operator"));
        assert_eq!(fails_at("os.hostname = x; drop").0, 15);
    }

    #[test]
    fn attribute_paths_resolve_against_the_class() {
        use crate::model::CiClass;
        // A registered path, and a component's plain attribute name.
        assert!(parse_for(CiClass::Computer, "os.hostname = web01").is_ok());
        assert!(parse_for(CiClass::Disk, "size_bytes > 100 and rotational = false").is_ok());
        // A typo is an error that names the attribute meant, where it is.
        let e = parse_for(CiClass::Computer, "status = active and os.hostnme = web01").unwrap_err();
        assert_eq!(e.position, 20);
        assert!(e.message.contains("'os.hostnme'"), "{}", e.message);
        assert!(
            e.message.contains("did you mean os.hostname?"),
            "{}",
            e.message
        );
        // Another class's attribute is not this one's.
        let e = parse_for(CiClass::Disk, "os.hostname = x").unwrap_err();
        assert!(
            e.message.contains("an attribute of disk: device_name"),
            "{}",
            e.message
        );
        // Built-in fields and software conditions need no registry.
        assert!(parse_for(CiClass::Service, "name = ssh.service and status = active").is_ok());
        assert!(parse_for(CiClass::Computer, "software.name = openssl").is_ok());
    }

    #[test]
    fn limits_are_enforced() {
        let long = format!("os.hostname = \"{}\"", "a".repeat(MAX_FILTER_BYTES));
        assert!(fails_at(&long).1.contains("longer than"));
        let many = vec!["os.hostname = x"; MAX_CONDITIONS + 1].join(" or ");
        assert!(fails_at(&many).1.contains("conditions"));
        let re = format!("os.hostname ~ \"{}\"", "a".repeat(MAX_REGEX_BYTES + 1));
        assert!(fails_at(&re).1.contains("regex longer"));
        let deep = format!("{}os.hostname = x{}", "(".repeat(1000), ")".repeat(1000));
        assert!(fails_at(&deep).1.contains("nested deeper"));
        let nots = format!("{}os.hostname = x", "not ".repeat(1000));
        assert!(fails_at(&nots).1.contains("nested deeper"));
    }
}
