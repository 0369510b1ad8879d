#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn rules(merge_slashes: bool, escaped_slashes: EscapedSlashes) -> PathRules {
    PathRules {
        normalize: true,
        merge_slashes,
        escaped_slashes,
    }
}

fn norm(path: &str) -> Result<String, PathError> {
    normalize(path, &PathRules::default()).map(Cow::into_owned)
}

#[test]
fn dot_segments_are_removed() {
    let cases = [
        ("/", "/"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/public/../admin", "/admin"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/./a", "/a"),
        ("/a//../b", "/a/b"),
        ("/.hidden/x", "/.hidden/x"),
        ("/a/..b/c.", "/a/..b/c."),
        ("/a/...", "/a/..."),
    ];
    for (path, expected) in cases {
        assert_eq!(norm(path).unwrap(), expected, "{path}");
    }
}

#[test]
fn unreserved_escapes_are_decoded_and_others_upper_cased() {
    assert_eq!(norm("/%41%7e%2d%5f%2E").unwrap(), "/A~-_.");
    assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
    assert_eq!(norm("/a%2e/b").unwrap(), "/a./b");
    assert_eq!(norm("/x%3fy%c3%a9%25").unwrap(), "/x%3Fy%C3%A9%25");
    // %25 is '%' itself: decoding stops there, so %252e stays as it is.
    assert_eq!(norm("/%252e%252e/x").unwrap(), "/%252e%252e/x");
}

#[test]
fn what_is_refused() {
    let cases = [
        ("/..", PathError::ClimbsAboveRoot),
        ("/a/../../b", PathError::ClimbsAboveRoot),
        ("/%2e%2e/etc", PathError::ClimbsAboveRoot),
        ("/a%00b", PathError::ControlCharacter),
        ("/a\u{1}b", PathError::ControlCharacter),
        ("/a\u{7f}", PathError::ControlCharacter),
        ("/a\tb", PathError::ControlCharacter),
        ("/public/..%2fadmin", PathError::EscapedSlash),
        ("/a%5Cb", PathError::EscapedSlash),
        ("/public\\..\\admin", PathError::EscapedSlash),
        ("/a%", PathError::BadPercentEncoding),
        ("/a%4", PathError::BadPercentEncoding),
        ("/a%zz", PathError::BadPercentEncoding),
    ];
    for (path, expected) in cases {
        assert_eq!(norm(path), Err(expected), "{path:?}");
    }
}

#[test]
fn escaped_slashes_are_kept_or_decoded_when_asked() {
    let keep = rules(false, EscapedSlashes::Keep);
    assert_eq!(normalize("/a/..%2fb", &keep).unwrap(), "/a/..%2Fb");
    assert_eq!(normalize("/a%5cb", &keep).unwrap(), "/a%5Cb");
    let decode = rules(false, EscapedSlashes::Decode);
    assert_eq!(normalize("/public/..%2fadmin", &decode).unwrap(), "/admin");
    assert_eq!(normalize("/a%5Cb", &decode).unwrap(), "/a/b");
    // A raw backslash is a separator to Windows origins: the same rules.
    assert_eq!(normalize("/public\\..\\admin", &decode).unwrap(), "/admin");
    assert_eq!(normalize("/a\\b", &keep).unwrap(), "/a\\b");
}

#[test]
fn slashes_are_merged_only_when_asked() {
    assert_eq!(norm("/a//b").unwrap(), "/a//b");
    let merge = rules(true, EscapedSlashes::Reject);
    assert_eq!(normalize("//a///b/", &merge).unwrap(), "/a/b/");
    assert_eq!(normalize("/a//../b", &merge).unwrap(), "/b");
}

#[test]
fn plain_paths_are_not_copied_and_other_targets_are_left() {
    for path in ["/", "/index.html", "/api/v1/users", "*", ""] {
        assert!(matches!(
            normalize(path, &PathRules::default()),
            Ok(Cow::Borrowed(_))
        ));
    }
    // Off: forwarded as it came, control characters still refused.
    let off = PathRules {
        normalize: false,
        ..PathRules::default()
    };
    assert_eq!(normalize("/a/../%2e", &off).unwrap(), "/a/../%2e");
    assert_eq!(normalize("/a\u{1}", &off), Err(PathError::ControlCharacter));
}

/// Paths built from the pieces that matter: separators, dots, escapes
/// (of dots, slashes, letters, NUL and others), letters, and stray `%`.
fn paths() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("."),
        Just(".."),
        Just("%2e"),
        Just("%2E"),
        Just("%2f"),
        Just("%5C"),
        Just("%41"),
        Just("%c3%a9"),
        Just("%25"),
        Just("%00"),
        Just("%"),
        Just("a"),
        Just("b"),
        Just("~"),
        Just("\\"),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|pieces| format!("/{}", pieces.concat()))
}

fn any_rules() -> impl Strategy<Value = PathRules> {
    (
        any::<bool>(),
        prop_oneof![
            Just(EscapedSlashes::Reject),
            Just(EscapedSlashes::Keep),
            Just(EscapedSlashes::Decode),
        ],
    )
        .prop_map(|(merge, slashes)| rules(merge, slashes))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Normalizing twice changes nothing.
    #[test]
    fn normalizing_is_idempotent(path in paths(), rules in any_rules()) {
        if let Ok(once) = normalize(&path, &rules) {
            let twice = normalize(&once, &rules).unwrap();
            prop_assert_eq!(&*twice, &*once);
        }
    }

    /// No `.` or `..` segment survives, raw or encoded, and the result is
    /// still an absolute path.
    #[test]
    fn no_dot_segment_survives(path in paths(), rules in any_rules()) {
        if let Ok(out) = normalize(&path, &rules) {
            prop_assert!(out.starts_with('/'));
            for segment in out.split('/') {
                prop_assert!(segment != "." && segment != "..", "{} -> {}", path, out);
                prop_assert!(!segment.eq_ignore_ascii_case("%2e"), "{} -> {}", path, out);
            }
            if rules.merge_slashes {
                prop_assert!(!out.contains("//"), "{} -> {}", path, out);
            }
        }
    }

    /// The prefix a route matches is the prefix the upstream sees: for any
    /// route prefix, the normalized path starts with it exactly when the
    /// path an origin resolves from what it is sent (dot segments removed,
    /// unreserved escapes decoded: normalizing again) does.
    #[test]
    fn the_routed_prefix_is_the_forwarded_prefix(
        path in paths(),
        prefix in prop_oneof![Just("/a/"), Just("/a"), Just("/b/"), Just("/"), Just("/A")],
        rules in any_rules(),
    ) {
        if let Ok(routed) = normalize(&path, &rules) {
            let origin_sees = normalize(&routed, &rules).unwrap();
            prop_assert_eq!(routed.starts_with(prefix), origin_sees.starts_with(prefix));
        }
    }

    /// Whatever the bytes, normalizing never panics, and a result holds no
    /// control character.
    #[test]
    fn any_string_is_refused_or_clean(path in "/\\PC{0,40}", rules in any_rules()) {
        if let Ok(out) = normalize(&path, &rules) {
            prop_assert!(!out.bytes().any(|b| b < 0x20 || b == 0x7f));
        }
    }
}
