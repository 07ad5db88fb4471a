//! A bounded XML reader for other tools' inventories: the whole document as a tree of
//! elements with their text, or a refusal that names the limit or the fault. Attributes
//! are not kept (the OCS format has none). A document type declaration is refused outright,
//! so no entity is ever defined, expanded or fetched: billion laughs and external entities
//! cannot start. Only XML's five predefined entities and character references are read.
//!
//! Architecture Invariant: memory is bounded by the input: at most `max_elements` nodes of
//! at most `max_text_bytes` of text each, nested at most `max_depth` deep, from at most
//! `max_bytes` of input.

use quick_xml::events::Event;
use quick_xml::Reader;

/// What a document may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_text_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: census_shared::limits::MAX_DECOMPRESSED_BYTES,
            max_depth: 16,
            max_elements: 1_000_000,
            max_text_bytes: 64 * 1024,
        }
    }
}

/// An element: its name, its text (trimmed), its child elements in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`, when it has any.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.as_str())
            .filter(|t| !t.is_empty())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("the document is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("elements nest deeper than {limit} levels (at byte {at})")]
    TooDeep { limit: usize, at: u64 },
    #[error("more than {limit} elements")]
    TooManyElements { limit: usize },
    #[error("the text of <{element}> is longer than {limit} bytes")]
    TextTooLong { element: String, limit: usize },
    #[error(
        "a document type declaration (DTD) is refused: entities are never defined or expanded"
    )]
    Dtd,
    #[error("not well-formed XML at byte {at}: {message}")]
    Malformed { at: u64, message: String },
    #[error("the document has no root element")]
    Empty,
}

/// Reads `bytes` as one XML document within `limits`.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Node, XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    reader.config_mut().check_end_names = true;
    let malformed = |reader: &Reader<&[u8]>, e: &dyn std::fmt::Display| XmlError::Malformed {
        at: reader.buffer_position(),
        message: e.to_string(),
    };
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| malformed(&reader, &e))?;
        match event {
            Event::Start(e) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep {
                        limit: limits.max_depth,
                        at: reader.buffer_position(),
                    });
                }
                if root.is_some() {
                    return Err(malformed(&reader, &"content after the root element"));
                }
                stack.push(Node {
                    name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    ..Node::default()
                });
            }
            Event::Empty(e) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                let node = Node {
                    name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err(malformed(&reader, &"content after the root element")),
                }
            }
            Event::End(_) => {
                let Some(node) = stack.pop() else {
                    return Err(malformed(&reader, &"an end tag without its start"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| malformed(&reader, &e))?;
                if stack.is_empty() && !text.trim().is_empty() {
                    return Err(malformed(&reader, &"text outside the root element"));
                }
                append_text(&mut stack, &text, limits.max_text_bytes)?;
            }
            Event::CData(c) => {
                let raw = c.into_inner();
                let text = std::str::from_utf8(&raw).map_err(|e| malformed(&reader, &e))?;
                append_text(&mut stack, text, limits.max_text_bytes)?;
            }
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed(&reader, &"the document ends inside an element"));
    }
    root.ok_or(XmlError::Empty)
}

fn append_text(stack: &mut [Node], text: &str, limit: usize) -> Result<(), XmlError> {
    let Some(node) = stack.last_mut() else {
        // Whitespace around the root element.
        return Ok(());
    };
    if node.text.len() + text.len() > limit {
        return Err(XmlError::TextTooLong {
            element: node.name.clone(),
            limit,
        });
    }
    node.text.push_str(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Node, XmlError> {
        parse(text.as_bytes(), Limits::default())
    }

    #[test]
    fn a_document_reads_as_a_tree_with_its_text_unescaped() {
        let doc = read(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REQUEST><CONTENT><HARDWARE>\
             <NAME>web&amp;01</NAME><UUID/></HARDWARE><SOFTWARES><NAME><![CDATA[a<b]]></NAME>\
             </SOFTWARES></CONTENT><DEVICEID>x&#x41;</DEVICEID></REQUEST>",
        )
        .unwrap();
        assert_eq!(doc.name, "REQUEST");
        let content = doc.child("CONTENT").unwrap();
        assert_eq!(
            content.child("HARDWARE").unwrap().text_of("NAME"),
            Some("web&01")
        );
        assert_eq!(content.child("HARDWARE").unwrap().text_of("UUID"), None);
        assert_eq!(
            content.child("SOFTWARES").unwrap().text_of("NAME"),
            Some("a<b")
        );
        assert_eq!(doc.text_of("DEVICEID"), Some("xA"));
    }

    #[test]
    fn entity_attacks_are_refused_before_anything_expands() {
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
            <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\
            <REQUEST>&lol2;</REQUEST>";
        assert_eq!(read(laughs), Err(XmlError::Dtd));
        let external = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>";
        assert_eq!(read(external), Err(XmlError::Dtd));
        // An entity nobody declared is not guessed at.
        assert!(matches!(
            read("<r>&x;</r>"),
            Err(XmlError::Malformed { .. })
        ));
    }

    #[test]
    fn every_limit_is_a_refusal_that_names_it() {
        let deep = format!("{}{}", "<a>".repeat(20), "</a>".repeat(20));
        assert!(matches!(
            read(&deep),
            Err(XmlError::TooDeep { limit: 16, .. })
        ));
        let small = Limits {
            max_bytes: 100,
            max_depth: 4,
            max_elements: 3,
            max_text_bytes: 5,
        };
        assert_eq!(
            parse(&[b' '; 101], small),
            Err(XmlError::TooLarge { limit: 100 })
        );
        assert_eq!(
            parse(b"<a><b/><c/><d/></a>", small),
            Err(XmlError::TooManyElements { limit: 3 })
        );
        assert_eq!(
            parse(b"<a>123456</a>", small),
            Err(XmlError::TextTooLong {
                element: "a".into(),
                limit: 5
            })
        );
        assert!(matches!(
            read("<a><b></a>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(read("<a>"), Err(XmlError::Malformed { .. })));
        assert!(matches!(read("<a/><b/>"), Err(XmlError::Malformed { .. })));
        assert_eq!(read("  "), Err(XmlError::Empty));
    }
}
