//! The GLPI agent's JSON inventory format (glpi-project/inventory_format): the OCS XML's
//! sections and fields in lower case, with a few renamed. Read into the same element tree
//! the XML reader makes, so one mapping serves all three formats.
//!
//! Architecture Invariant: bounded as the XML reader is: the input's size, nesting (serde's
//! own recursion limit, then ours), the number of elements and each text's length.

use serde_json::Value;

use super::xml::{Limits, Node, XmlError};

/// JSON names that are not the XML names in lower case, per section.
const RENAMED: [(&str, &str, &str); 3] = [
    ("NETWORKS", "mac", "MACADDR"),
    ("SOFTWARES", "install_date", "INSTALLDATE"),
    ("STORAGES", "serial", "SERIALNUMBER"),
];

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("not JSON: {0}")]
    Syntax(String),
    #[error(transparent)]
    Limit(#[from] XmlError),
}

/// The document as the tree `REQUEST/CONTENT/...` an OCS inventory makes.
pub fn to_tree(bytes: &[u8], limits: Limits) -> Result<Node, JsonError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            limit: limits.max_bytes,
        }
        .into());
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| JsonError::Syntax(e.to_string()))?;
    let Value::Object(top) = &doc else {
        return Err(JsonError::Syntax("the document is not an object".into()));
    };
    let mut elements = 0;
    let mut root = Node {
        name: "REQUEST".into(),
        ..Node::default()
    };
    for (k, v) in top {
        add(&mut root, "", k, v, 1, &limits, &mut elements)?;
    }
    // The newer agents say `"action": "inventory"` where the XML says QUERY.
    if root.child("QUERY").is_none() {
        if let Some(action) = top.get("action").and_then(Value::as_str) {
            root.children.push(Node {
                name: "QUERY".into(),
                text: action.to_ascii_uppercase(),
                children: Vec::new(),
            });
        }
    }
    Ok(root)
}

fn add(
    parent: &mut Node,
    section: &str,
    key: &str,
    value: &Value,
    depth: usize,
    limits: &Limits,
    elements: &mut usize,
) -> Result<(), XmlError> {
    if depth >= limits.max_depth {
        return Err(XmlError::TooDeep {
            limit: limits.max_depth,
            at: 0,
        });
    }
    let name = RENAMED
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map(|(_, _, n)| n.to_string())
        .unwrap_or_else(|| key.to_ascii_uppercase());
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    for item in items {
        *elements += 1;
        if *elements > limits.max_elements {
            return Err(XmlError::TooManyElements {
                limit: limits.max_elements,
            });
        }
        let mut node = Node {
            name: name.clone(),
            ..Node::default()
        };
        match item {
            Value::Object(fields) => {
                for (k, v) in fields {
                    add(&mut node, &name, k, v, depth + 1, limits, elements)?;
                }
            }
            Value::Null => {}
            Value::Bool(b) => node.text = if *b { "1" } else { "0" }.into(),
            Value::String(s) => node.text = s.trim().to_string(),
            other => node.text = other.to_string(),
        }
        if node.text.len() > limits.max_text_bytes {
            return Err(XmlError::TextTooLong {
                element: name,
                limit: limits.max_text_bytes,
            });
        }
        parent.children.push(node);
    }
    Ok(())
}
