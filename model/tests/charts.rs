//! Every variant's counterexample draws as a sequence chart at the default bounds, as
//! `model check --chart` writes it and as the explorer shows it: well-formed SVG, one band per
//! step of the text trace numbered 1..n in order, one red rule naming the property lost. The
//! command line writes the chart of the property asked for, and says why when there is none.
//! The XML checker these tests rely on is itself shown to reject ill-formed documents.

mod support;

use std::process::Command;

use model::TicketingModel;
use model::chart;
use model::config::{Config, Variant};
use model::properties::must_violate;
use model::run::{RunOptions, Strategy, check};
use model::trace::Trace;
use stateright::Model;
use support::xml::{self, Element};

fn texts(elements: &[Element], class: &str) -> Vec<String> {
    elements
        .iter()
        .filter(|e| e.name == "text" && e.has_class(class))
        .map(|e| e.text.clone())
        .collect()
}

#[test]
fn every_variants_counterexample_draws_at_the_default_bounds() {
    let options = RunOptions {
        strategy: Strategy::Auto,
        threads: 1,
        ..RunOptions::default()
    };
    for variant in &Variant::ALL[1..] {
        let config = Config::new(*variant);
        let model = TicketingModel::new(config);
        let outcome = check(config, &options);
        let prop = must_violate(*variant).first().expect("a required property");
        let path = outcome
            .verdicts
            .iter()
            .find(|verdict| verdict.prop == prop)
            .and_then(|verdict| verdict.counterexample.clone())
            .unwrap_or_else(|| panic!("{variant}: no counterexample of {}", prop.name()));
        let trace = Trace::from_path(&model, Some(prop), &path);
        let svg = chart::counterexample(&model, &trace, prop);
        let drawn = xml::parse(&svg).unwrap_or_else(|problem| panic!("{variant}: {problem}"));
        let numbers: Vec<String> = (1..=trace.steps.len()).map(|n| n.to_string()).collect();
        assert_eq!(texts(&drawn, "msc-step"), numbers, "{variant}: steps 1..n");
        let lanes = drawn.iter().filter(|e| e.has_class("msc-lane")).count();
        assert_eq!(lanes, 2 * usize::from(config.members) + 3, "{variant}");
        let losses = texts(&drawn, "msc-loss");
        assert_eq!(losses.len(), 1, "{variant}: {losses:?}");
        assert!(
            losses[0].starts_with(&format!("{}. {}:", prop.number(), prop.name())),
            "{variant}: {losses:?}"
        );
        let explorer = model.as_svg(path).expect("the explorer draws every path");
        xml::parse(&explorer).unwrap_or_else(|problem| panic!("{variant} explorer: {problem}"));
    }
}

fn model_check(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_model"))
        .arg("check")
        .args(args)
        .output()
        .expect("model check runs")
}

#[test]
fn the_command_line_draws_the_property_asked_for_or_says_why_not() {
    let work = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("charts");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("scratch dir");

    let racy = work.join("racy-reserve.svg");
    let racy_arg = racy.to_str().expect("a UTF-8 path");
    let output = model_check(&[
        "--variant",
        "racy-reserve",
        "--threads",
        "1",
        "--chart",
        racy_arg,
    ]);
    assert!(output.status.success(), "{output:?}");
    let drawn = xml::parse(&std::fs::read_to_string(&racy).expect("chart written")).expect("XML");
    let loss = texts(&drawn, "msc-loss");
    assert!(
        loss[0].starts_with("3. single reservation: VIOLATED at step"),
        "{loss:?}"
    );

    let course = work.join("course.svg");
    let course_arg = course.to_str().expect("a UTF-8 path");
    let asked = [
        "--variant",
        "course",
        "--threads",
        "1",
        "--property",
        "nothing is stuck",
    ];
    let output = model_check(&[&asked[..], &["--chart", course_arg]].concat());
    assert!(output.status.success(), "{output:?}");
    let drawn = xml::parse(&std::fs::read_to_string(&course).expect("chart written")).expect("XML");
    assert!(texts(&drawn, "msc-loss")[0].starts_with("8. nothing is stuck:"));

    let reference = work.join("reference.svg");
    let small = [
        "--updates",
        "0",
        "--orders",
        "0",
        "--cancels",
        "0",
        "--crashes",
        "0",
    ];
    let output = model_check(
        &[
            &small[..],
            &[
                "--redeliveries",
                "0",
                "--chart",
                reference.to_str().expect("UTF-8"),
            ],
        ]
        .concat(),
    );
    assert!(output.status.success(), "{output:?}");
    assert!(!reference.exists(), "no counterexample, no chart");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no chart drawn"), "{stderr}");
}

#[test]
fn the_xml_checker_rejects_ill_formed_documents() {
    assert!(xml::parse(r#"<svg><text x="1">a &amp; b</text></svg>"#).is_ok());
    for bad in [
        "<svg><text>a</svg>",
        "<svg><text>a</text>",
        "<svg>a & b</svg>",
        "<svg>a < b</svg>",
        "<svg x=1/>",
        r#"<svg x="a<b"/>"#,
        "<svg/><svg/>",
        "<svg>&nbsp;</svg>",
    ] {
        assert!(xml::parse(bad).is_err(), "{bad} accepted");
    }
}
