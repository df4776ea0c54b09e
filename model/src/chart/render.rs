//! The chart's layout and its SVG: a header (title, bounds, legend, lane titles), one band
//! per step with its number beside it and one row per mark, the red rules where properties
//! are lost, and the end state.
//!
//! Text is monospace, so a label's width is known from its length: labels wrap before they
//! get wider than the chart, and notes and arrow labels are centred on their lanes but kept
//! inside the chart.
//!
//! The invariant: every mark has a row of its own, so no two labels overlap, and every text
//! written is escaped ([`escape`]), so the drawing is well-formed XML whatever the words.

use std::fmt::Write as _;

use super::lanes::Lane;
use super::marks::{ArrowKind, Mark, NoteKind, Row};
use crate::state::Service;
use crate::svg::{Drawing, escape};

/// One line of text, in pixels.
const LINE: i32 = 15;
/// The advance of one character of the 12 px monospace font, in tenths of a pixel (0.6 em,
/// rounded up, so a label is never wider than reserved).
const CHAR_TENTHS: i32 = 73;
/// The width of one lane, in pixels: room for its two-line title.
const LANE_WIDTH: i32 = 168;
/// The column of step numbers left of the lanes, in pixels.
const STEP_COLUMN: i32 = 48;
/// The margin right of the last lane, in pixels.
const MARGIN: i32 = 12;
/// The longest line of a label before it wraps, in characters.
const WRAP_CHARS: usize = 84;
/// The title's font size over the body's: a title line holds this much fewer characters.
const TITLE_SCALE_PERCENT: usize = 125;

/// A red rule across the chart: a property lost after a step.
pub(crate) struct Rule {
    /// The step after which it is drawn (0: before the first).
    pub(crate) after_step: usize,
    /// What was lost, in bold.
    pub(crate) headline: String,
    /// Why (the text trace's `=>` line), and what follows.
    pub(crate) lines: Vec<String>,
}

/// Everything a chart shows.
pub(crate) struct Chart<'a> {
    pub(crate) title: String,
    pub(crate) subtitle: String,
    pub(crate) lanes: Vec<Lane>,
    pub(crate) rows: &'a [Row],
    pub(crate) rules: &'a [Rule],
    pub(crate) footer: Vec<String>,
}

const STYLE: &str = "\
.msc-bg { fill: #ffffff; }
.msc-title { font-size: 15px; font-weight: bold; }
.msc-subtitle { fill: #555; }
.msc-band { fill: #f1f4f9; }
.msc-group { fill: #e8edf5; stroke: #b8c4d8; }
.msc-group-broker { fill: #efe8f5; stroke: #c6b8d8; }
.msc-lane-box { fill: #ffffff; stroke: #7a8699; }
.msc-lane-line { stroke: #9aa5b5; stroke-width: 1.2; }
.msc-broker-line { stroke: #7b5aa6; stroke-width: 2.5; }
.msc-step { font-weight: bold; fill: #333; }
.msc-publish { stroke: #1f5fbf; fill: #1f5fbf; }
.msc-retry { stroke: #1f5fbf; fill: #1f5fbf; }
.msc-deliver { stroke: #23803a; fill: #23803a; }
.msc-ack { stroke: #5a5a5a; fill: #5a5a5a; }
.msc-nak { stroke: #c0392b; fill: #c0392b; }
line.msc-arrow, line.msc-sample { stroke-width: 1.6; fill: none; }
line.msc-retry, line.msc-nak { stroke-dasharray: 6 3; }
text.msc-halo { paint-order: stroke; stroke: #ffffff; stroke-width: 4px; stroke-linejoin: round; }
.msc-write { fill: #fff6cc; stroke: #b39b00; }
.msc-read { fill: none; stroke: none; }
.msc-crash { fill: #fbd9d9; stroke: #c0392b; stroke-width: 1.5; }
.msc-expiry { fill: #ffe9cc; stroke: #d97a00; stroke-width: 1.5; }
.msc-alarm { fill: #fde3e3; stroke: #c0392b; stroke-dasharray: 4 2; }
text.msc-read-text { fill: #444; font-style: italic; }
text.msc-bold { font-weight: bold; }
.msc-loss-line { stroke: #d0021b; stroke-width: 3; }
.msc-loss-panel { fill: #fff1f1; }
text.msc-loss { fill: #d0021b; font-weight: bold; }
text.msc-loss-reason { fill: #9b0015; }
.msc-end { fill: #f7f7f7; stroke: #999; }
";

/// The SVG the explorer and `check --chart` show.
pub(crate) fn render(chart: &Chart) -> Drawing {
    let width = STEP_COLUMN + LANE_WIDTH * chart.lanes.len() as i32 + MARGIN;
    let mut canvas = Canvas {
        width,
        back: String::new(),
        front: String::new(),
    };
    let lanes_top = header(&mut canvas, chart);
    let mut y = lanes_top;
    for (index, row) in chart.rows.iter().enumerate() {
        y = draw_row(&mut canvas, chart, row, index, y);
    }
    for rule in chart
        .rules
        .iter()
        .filter(|rule| rule.after_step > chart.rows.len())
    {
        y = draw_rule(&mut canvas, rule, y);
    }
    let bottom = y + 6;
    for (index, lane) in chart.lanes.iter().enumerate() {
        let class = if *lane == Lane::Broker {
            "msc-broker-line"
        } else {
            "msc-lane-line"
        };
        let x = lane_x(index);
        let _ = writeln!(
            canvas.back,
            r#"<line x1="{x}" y1="{lanes_top}" x2="{x}" y2="{bottom}" class="{class}"/>"#
        );
    }
    let height = footer(&mut canvas, &chart.footer, bottom + 10);
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">
<title>{}</title>
<style>
{STYLE}</style>
{}<rect x="0" y="0" width="{width}" height="{height}" class="msc-bg"/>
{}{}</svg>
"#,
        escape(&chart.title),
        markers(),
        canvas.back,
        canvas.front
    );
    Drawing { width, height, svg }
}

/// Two layers: bands and lane lines behind, marks and text in front.
struct Canvas {
    width: i32,
    back: String,
    front: String,
}

impl Canvas {
    fn text(&mut self, x: i32, y: i32, class: &str, anchor: &str, text: &str) {
        let _ = writeln!(
            self.front,
            r#"<text x="{x}" y="{y}" class="{class}" text-anchor="{anchor}">{}</text>"#,
            escape(text)
        );
    }

    fn rect(&mut self, x: i32, y: i32, width: i32, height: i32, class: &str) {
        let _ = writeln!(
            self.front,
            r#"<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="4" class="{class}"/>"#
        );
    }

    /// The most characters a line across the whole chart holds.
    fn room_chars(&self) -> usize {
        usize::try_from((self.width - 2 * MARGIN - 16) * 10 / CHAR_TENTHS).unwrap_or(WRAP_CHARS)
    }

    /// The widest a mark's label may be, in characters.
    fn wrap_chars(&self) -> usize {
        WRAP_CHARS.min(self.room_chars())
    }

    /// The left edge of a `width`-wide box centred on `centre`, kept inside the lanes (clear
    /// of the step numbers).
    fn clamp_left(&self, centre: i32, width: i32) -> i32 {
        (centre - width / 2)
            .min(self.width - MARGIN - width)
            .max(STEP_COLUMN - 6)
    }
}

/// The x of lane `index`'s line.
fn lane_x(index: usize) -> i32 {
    STEP_COLUMN + LANE_WIDTH * index as i32 + LANE_WIDTH / 2
}

/// The width of `chars` characters, in pixels.
fn text_width(chars: usize) -> i32 {
    (i32::try_from(chars).unwrap_or(i32::MAX / CHAR_TENTHS) * CHAR_TENTHS + 9) / 10
}

/// `text` in lines of at most `width` characters, broken at spaces where possible.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        while word.chars().count() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let rest = word.split_off(
                word.char_indices()
                    .nth(width)
                    .map_or(word.len(), |(i, _)| i),
            );
            lines.push(word);
            word = rest;
        }
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Arrow heads, one per arrow colour.
fn markers() -> String {
    let mut defs = String::from("<defs>\n");
    for kind in ["publish", "retry", "deliver", "ack", "nak"] {
        let _ = writeln!(
            defs,
            r#"<marker id="msc-head-{kind}" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto" markerUnits="userSpaceOnUse"><path d="M0,0 L10,4 L0,8 z" class="msc-{kind}"/></marker>"#
        );
    }
    defs.push_str("</defs>\n");
    defs
}

fn arrow_class(kind: ArrowKind) -> &'static str {
    match kind {
        ArrowKind::Publish => "publish",
        ArrowKind::Retry => "retry",
        ArrowKind::Deliver => "deliver",
        ArrowKind::Ack => "ack",
        ArrowKind::Nak => "nak",
    }
}

fn note_class(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::Write => "msc-write",
        NoteKind::Read => "msc-read",
        NoteKind::Crash => "msc-crash",
        NoteKind::Expiry => "msc-expiry",
        NoteKind::Alarm => "msc-alarm",
    }
}

/// The title, the bounds, the legend, the services' headers and the lane titles; returns
/// where the lanes start.
fn header(canvas: &mut Canvas, chart: &Chart) -> i32 {
    let mut y = 4;
    for line in wrap(
        &chart.title,
        canvas.room_chars() * 100 / TITLE_SCALE_PERCENT,
    ) {
        y += 18;
        canvas.text(MARGIN, y, "msc-title", "start", &line);
    }
    y += 2;
    for line in wrap(&chart.subtitle, canvas.room_chars()) {
        y += LINE;
        canvas.text(MARGIN, y, "msc-subtitle", "start", &line);
    }
    let group_top = legend(canvas, y + 22) + 12;
    let spans = [
        (Some(Service::Tickets), "tickets service", "msc-group"),
        (None, "broker", "msc-group-broker"),
        (Some(Service::Orders), "orders service", "msc-group"),
    ];
    for (service, name, class) in spans {
        let indices: Vec<usize> = (0..chart.lanes.len())
            .filter(|i| chart.lanes[*i].service() == service)
            .collect();
        let (Some(first), Some(last)) = (indices.first(), indices.last()) else {
            continue;
        };
        let left = lane_x(*first) - LANE_WIDTH / 2 + 3;
        let right = lane_x(*last) + LANE_WIDTH / 2 - 3;
        canvas.rect(left, group_top, right - left, 20, class);
        canvas.text(
            (left + right) / 2,
            group_top + 14,
            "msc-bold",
            "middle",
            name,
        );
    }
    let (top, title_height) = (group_top + 26, 2 * LINE + 8);
    for (index, lane) in chart.lanes.iter().enumerate() {
        let x = lane_x(index);
        let _ = writeln!(canvas.front, r#"<g class="msc-lane">"#);
        canvas.rect(
            x - LANE_WIDTH / 2 + 6,
            top,
            LANE_WIDTH - 12,
            title_height,
            "msc-lane-box",
        );
        let [first, second] = lane.title();
        canvas.text(x, top + LINE, "msc-bold", "middle", &first);
        canvas.text(x, top + 2 * LINE, "", "middle", &second);
        let _ = writeln!(canvas.front, "</g>");
    }
    top + title_height + 6
}

/// One sample of each arrow and note, with what it means, wrapped to the chart's width, from
/// the baseline `top`; returns its last baseline.
fn legend(canvas: &mut Canvas, top: i32) -> i32 {
    let arrows = [
        (ArrowKind::Publish, "publish"),
        (ArrowKind::Deliver, "deliver"),
        (ArrowKind::Ack, "ack"),
        (ArrowKind::Nak, "nak / failed delivery"),
        (ArrowKind::Retry, "publisher retry"),
    ];
    let notes = [
        (NoteKind::Write, "store write"),
        (NoteKind::Crash, "crash"),
        (NoteKind::Expiry, "ack-wait expiry"),
        (NoteKind::Alarm, "conflict / rule broken"),
    ];
    let (mut x, mut y) = (MARGIN, top);
    let mut place = |canvas: &Canvas, width: i32| {
        if x + width > canvas.width - MARGIN {
            (x, y) = (MARGIN, y + LINE + 4);
        }
        let at = (x, y);
        x += width + 14;
        at
    };
    for (kind, meaning) in arrows {
        let (left, base) = place(canvas, 34 + text_width(meaning.len()));
        let class = arrow_class(kind);
        let _ = writeln!(
            canvas.front,
            r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" class="msc-sample msc-{class}" marker-end="url(#msc-head-{class})"/>"#,
            base - 4,
            left + 28,
            base - 4
        );
        canvas.text(left + 34, base, "", "start", meaning);
    }
    for (kind, meaning) in notes {
        let width = text_width(meaning.len()) + 10;
        let (left, base) = place(canvas, width);
        let class = format!("msc-sample {}", note_class(kind));
        canvas.rect(left, base - 12, width, 16, &class);
        canvas.text(left + 5, base, "", "start", meaning);
    }
    let hint = "#n: message n of the stream (its sequence number - 1)";
    let (left, base) = place(canvas, text_width(hint.len()));
    canvas.text(left, base, "msc-subtitle", "start", hint);
    base
}

/// One step: its band, its number, its marks; the rules lost after it. Returns the next top.
fn draw_row(canvas: &mut Canvas, chart: &Chart, row: &Row, index: usize, top: i32) -> i32 {
    let mut y = top + 3;
    for mark in &row.marks {
        y = match mark {
            Mark::Arrow {
                from,
                to,
                kind,
                text,
            } => draw_arrow(canvas, chart, (*from, *to), *kind, text, y),
            Mark::Note { lane, kind, text } => draw_note(canvas, chart, *lane, *kind, text, y),
        };
    }
    let bottom = y + 3;
    if index.is_multiple_of(2) {
        let _ = writeln!(
            canvas.back,
            r#"<rect x="0" y="{top}" width="{}" height="{}" class="msc-band"/>"#,
            canvas.width,
            bottom - top
        );
    }
    canvas.text(
        STEP_COLUMN - 14,
        top + LINE + 2,
        "msc-step",
        "end",
        &row.step.to_string(),
    );
    let mut y = bottom;
    for rule in chart
        .rules
        .iter()
        .filter(|rule| rule.after_step == row.step)
    {
        y = draw_rule(canvas, rule, y);
    }
    y
}

fn lane_index(chart: &Chart, lane: Lane) -> usize {
    chart
        .lanes
        .iter()
        .position(|l| *l == lane)
        .unwrap_or(chart.lanes.len() / 2)
}

/// An arrow with its label above it; returns the next top.
fn draw_arrow(
    canvas: &mut Canvas,
    chart: &Chart,
    (from, to): (Lane, Lane),
    kind: ArrowKind,
    text: &str,
    top: i32,
) -> i32 {
    let (x1, x2) = (
        lane_x(lane_index(chart, from)),
        lane_x(lane_index(chart, to)),
    );
    let lines = wrap(text, canvas.wrap_chars());
    let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let centre = canvas.clamp_left((x1 + x2) / 2, text_width(longest)) + text_width(longest) / 2;
    let class = arrow_class(kind);
    for (i, line) in lines.iter().enumerate() {
        canvas.text(
            centre,
            top + LINE * (i as i32 + 1) - 2,
            &format!("msc-label msc-halo msc-{class}"),
            "middle",
            line,
        );
    }
    let y = top + LINE * lines.len() as i32 + 4;
    let end = if x2 > x1 { x2 - 2 } else { x2 + 2 };
    let _ = writeln!(
        canvas.front,
        r#"<line x1="{x1}" y1="{y}" x2="{end}" y2="{y}" class="msc-arrow msc-{class}" marker-end="url(#msc-head-{class})"/>"#
    );
    y + 7
}

/// A note on one lane; returns the next top.
fn draw_note(
    canvas: &mut Canvas,
    chart: &Chart,
    lane: Lane,
    kind: NoteKind,
    text: &str,
    top: i32,
) -> i32 {
    let lines = wrap(text, canvas.wrap_chars());
    let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let width = text_width(longest) + 12;
    let height = LINE * lines.len() as i32 + 6;
    let left = canvas.clamp_left(lane_x(lane_index(chart, lane)), width);
    let class = note_class(kind);
    canvas.rect(left, top + 1, width, height, class);
    let text_class = match kind {
        NoteKind::Read => "msc-read-text msc-halo",
        NoteKind::Crash | NoteKind::Alarm => "msc-bold",
        NoteKind::Write | NoteKind::Expiry => "",
    };
    for (i, line) in lines.iter().enumerate() {
        canvas.text(
            left + 6,
            top + LINE * (i as i32 + 1) - 1,
            text_class,
            "start",
            line,
        );
    }
    top + height + 4
}

/// A red rule across the chart with what was lost and why, on a panel that hides the lane
/// lines behind its text; returns the next top.
fn draw_rule(canvas: &mut Canvas, rule: &Rule, top: i32) -> i32 {
    let chars = canvas.room_chars();
    let headline = wrap(&rule.headline, chars);
    let reasons: Vec<String> = rule
        .lines
        .iter()
        .flat_map(|line| wrap(line, chars))
        .collect();
    let rule_y = top + 6;
    let height = LINE * (headline.len() + reasons.len()) as i32 + 8;
    let _ = writeln!(
        canvas.front,
        r#"<g class="msc-loss-rule"><rect x="0" y="{rule_y}" width="{}" height="{height}" class="msc-loss-panel"/><line x1="0" y1="{rule_y}" x2="{}" y2="{rule_y}" class="msc-loss-line"/></g>"#,
        canvas.width, canvas.width
    );
    let mut y = rule_y + LINE;
    for line in &headline {
        canvas.text(MARGIN, y, "msc-loss", "start", line);
        y += LINE;
    }
    for line in &reasons {
        canvas.text(MARGIN, y, "msc-loss-reason", "start", line);
        y += LINE;
    }
    rule_y + height + 6
}

/// The end state's lines in a box; returns the drawing's height.
fn footer(canvas: &mut Canvas, lines: &[String], top: i32) -> i32 {
    if lines.is_empty() {
        return top;
    }
    let chars = canvas.room_chars();
    let wrapped: Vec<String> = lines.iter().flat_map(|line| wrap(line, chars)).collect();
    let height = LINE * wrapped.len() as i32 + 10;
    canvas.rect(MARGIN, top, canvas.width - 2 * MARGIN, height, "msc-end");
    for (i, line) in wrapped.iter().enumerate() {
        let class = if i == 0 { "msc-bold" } else { "" };
        canvas.text(
            MARGIN + 8,
            top + LINE * (i as i32 + 1),
            class,
            "start",
            line,
        );
    }
    top + height + 10
}
