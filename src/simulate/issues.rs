//! Data issues without what differs from one patient to the next (resource ids, entry
//! positions, dates), so the same problem in many patients is counted as one.

/// `issue` with resource ids (`Type/ID`, `urn:uuid:…`, `#id`), entry positions (`[3]`),
/// dates (`2026-10-02`) and parser positions (`at line 1 column 248`) replaced by
/// placeholders.
pub fn normalise(issue: &str) -> String {
    let chars: Vec<char> = issue.chars().collect();
    let mut out = String::with_capacity(issue.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let at_word_start = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if starts_with(rest, "urn:uuid:") {
            out.push_str("urn:uuid:…");
            i += 9 + id_length(&rest[9..]);
        } else if chars[i] == '[' && rest.len() > 1 && rest[1].is_ascii_digit() {
            let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if rest.get(1 + digits) == Some(&']') {
                out.push_str("[n]");
                i += digits + 2;
            } else {
                out.push('[');
                i += 1;
            }
        } else if starts_with(rest, " at line ") {
            // serde's "at line 1 column 248": where in the resource, not what.
            out.push_str(" at line n");
            i += 9 + rest[9..].iter().take_while(|c| c.is_ascii_digit()).count();
            if starts_with(&chars[i..], " column ") {
                out.push_str(" column n");
                i += 8 + chars[i + 8..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
            }
        } else if at_word_start && is_date(rest) {
            out.push_str("DATE");
            i += 10;
        } else if at_word_start && chars[i].is_ascii_uppercase() {
            let word = rest
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            if rest.get(word) == Some(&'/') && id_length(&rest[word + 1..]) > 0 {
                out.extend(&rest[..=word]);
                out.push('…');
                i += word + 1 + id_length(&rest[word + 1..]);
            } else {
                out.extend(&rest[..word.max(1)]);
                i += word.max(1);
            }
        } else if chars[i] == '#' && rest.len() > 1 && id_length(&rest[1..]) > 0 {
            out.push_str("#…");
            i += 1 + id_length(&rest[1..]);
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn starts_with(chars: &[char], prefix: &str) -> bool {
    chars.len() >= prefix.len() && prefix.chars().zip(chars).all(|(a, b)| a == *b)
}

fn id_length(chars: &[char]) -> usize {
    chars
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '-' || **c == '.')
        .count()
}

fn is_date(chars: &[char]) -> bool {
    chars.len() >= 10
        && chars[..10].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == '-',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_positions_and_dates_go_and_the_problem_stays() {
        let a = "Observation/o-17 (prefetch.observations.entry[12]): unit 'mg' of magnesium on 2026-03-01 is not accepted";
        let b = "Observation/x9 (prefetch.observations.entry[3]): unit 'mg' of magnesium on 2025-12-30 is not accepted";
        assert_eq!(normalise(a), normalise(b));
        assert_eq!(
            normalise(a),
            "Observation/… (prefetch.observations.entry[n]): unit 'mg' of magnesium on DATE is not accepted"
        );
        assert_eq!(
            normalise("medicationReference 'urn:uuid:1234-ab' could not be resolved"),
            "medicationReference 'urn:uuid:…' could not be resolved"
        );
        assert_eq!(
            normalise("could not be read: invalid type at line 1 column 248"),
            "could not be read: invalid type at line n column n"
        );
        assert_ne!(
            normalise("unit 'mg' is not accepted"),
            normalise("unit 'g' is not accepted")
        );
    }
}
