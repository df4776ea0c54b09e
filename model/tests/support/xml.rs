//! A tiny well-formedness check for the SVG the model draws, so tests need no XML crate: one
//! root element, every tag closed in order, attribute values quoted, `<` never and `&` only
//! as an entity reference in text and attribute values. It also returns the elements, so tests
//! can count lanes and arrows and read labels.

/// An element of the document.
#[derive(Clone, Debug)]
pub struct Element {
    /// Its tag name.
    pub name: String,
    /// Its attributes, in order.
    pub attributes: Vec<(String, String)>,
    /// Its own text (not its children's), with entities decoded.
    pub text: String,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether its `class` attribute lists `class`.
    pub fn has_class(&self, class: &str) -> bool {
        self.attribute("class")
            .is_some_and(|classes| classes.split_whitespace().any(|c| c == class))
    }
}

/// The elements of `document` in document order, or what makes it ill-formed.
pub fn parse(document: &str) -> Result<Vec<Element>, String> {
    let mut elements: Vec<Element> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut roots = 0;
    let mut rest = document;
    while !rest.is_empty() {
        let Some(start) = rest.find('<') else {
            text_into(rest, &open, &mut elements)?;
            break;
        };
        text_into(&rest[..start], &open, &mut elements)?;
        rest = &rest[start..];
        if let Some(skipped) = skip_special(rest)? {
            rest = skipped;
            continue;
        }
        let end = rest.find('>').ok_or("a tag is not closed")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let index = open
                .pop()
                .ok_or_else(|| format!("</{name}> closes nothing"))?;
            if elements[index].name != name.trim() {
                return Err(format!("<{}> closed by </{name}>", elements[index].name));
            }
            continue;
        }
        let (tag, empty) = match tag.strip_suffix('/') {
            Some(tag) => (tag, true),
            None => (tag, false),
        };
        if open.is_empty() {
            roots += 1;
        }
        elements.push(element(tag)?);
        if !empty {
            open.push(elements.len() - 1);
        }
    }
    if let Some(index) = open.pop() {
        return Err(format!("<{}> is never closed", elements[index].name));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements, expected one"));
    }
    Ok(elements)
}

/// Skips an XML declaration or a comment at the start of `rest`.
fn skip_special(rest: &str) -> Result<Option<&str>, String> {
    for (open, close) in [("<?", "?>"), ("<!--", "-->")] {
        if rest.starts_with(open) {
            let end = rest.find(close).ok_or(format!("{open} is never closed"))?;
            return Ok(Some(&rest[end + close.len()..]));
        }
    }
    Ok(None)
}

fn element(tag: &str) -> Result<Element, String> {
    let tag = tag.trim();
    let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
    let name = &tag[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == ':')
    {
        return Err(format!("bad tag name {name:?}"));
    }
    let mut attributes = Vec::new();
    let mut rest = tag[name_end..].trim_start();
    while !rest.is_empty() {
        let equals = rest
            .find('=')
            .ok_or_else(|| format!("attribute without value in <{name}>"))?;
        let key = rest[..equals].trim().to_owned();
        let after = &rest[equals + 1..];
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let quote = quote.ok_or_else(|| format!("unquoted value of {key} in <{name}>"))?;
        let close = after[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated value of {key} in <{name}>"))?;
        attributes.push((key, decode(&after[1..1 + close])?));
        rest = after[close + 2..].trim_start();
    }
    Ok(Element {
        name: name.to_owned(),
        attributes,
        text: String::new(),
    })
}

fn text_into(text: &str, open: &[usize], elements: &mut [Element]) -> Result<(), String> {
    let decoded = decode(text)?;
    match open.last() {
        Some(index) => elements[*index].text.push_str(&decoded),
        None if decoded.trim().is_empty() => {}
        None => return Err(format!("text outside the root: {decoded:?}")),
    }
    Ok(())
}

/// `text` with its entity references decoded; an error for a raw `<` or a bare `&`.
fn decode(text: &str) -> Result<String, String> {
    if text.contains('<') {
        return Err(format!("raw '<' in {text:?}"));
    }
    let mut decoded = String::new();
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        decoded.push_str(&rest[..amp]);
        let semicolon = rest[amp..]
            .find(';')
            .ok_or_else(|| format!("bare '&' in {text:?}"))?;
        let entity = &rest[amp + 1..amp + semicolon];
        decoded.push(match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => return Err(format!("unknown entity &{entity}; in {text:?}")),
        });
        rest = &rest[amp + semicolon + 1..];
    }
    decoded.push_str(rest);
    Ok(decoded)
}
