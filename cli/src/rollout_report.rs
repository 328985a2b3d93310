//! `polctl simulate --report FILE.html`: one self-contained page (inline SVG and CSS, no
//! scripts, nothing fetched) a release engineer can attach to a change request: the verdict,
//! the deny and error rates per cohort over time with the stages drawn as bands, the
//! timeline, the figures per stage and the divergences.

use polctl_lang::eval::time::parse_rfc3339;
use polctl_rollout::controller::show;
use polctl_rollout::plan::Plan;
use polctl_rollout::simulate::{SeriesPoint, SimulationReport};
use std::fmt::Write;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 24.0;
const COLOURS: [&str; 2] = ["#2563eb", "#ea580c"];
const BANDS: [&str; 4] = ["#f1f5f9", "#e2e8f0", "#fef3c7", "#dcfce7"];

/// Fewest decisions of a cohort in a bucket for its rate to be drawn: a canary bucket with
/// three decisions would draw 0 % or 100 % and hide everything else.
const MIN_DECISIONS_PER_POINT: u64 = 20;

/// One chart of a rate per cohort over time.
fn chart(
    report: &SimulationReport,
    title: &str,
    rate: impl Fn(&SeriesPoint, usize) -> Option<f64>,
) -> String {
    let points = &report.series.points;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {WIDTH} {}\" width=\"{WIDTH}\" height=\"{}\" role=\"img\" aria-label=\"{}\">",
        escape(title),
        HEIGHT + BOTTOM,
        HEIGHT + BOTTOM,
        escape(title)
    );
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        svg.push_str("<text x=\"60\" y=\"40\">no traffic</text></svg></figure>");
        return svg;
    };
    let start = first.start as f64;
    let end = (last.start + report.series.bucket_ms) as f64;
    let x = |t: f64| LEFT + (t - start) / (end - start).max(1.0) * (WIDTH - LEFT - 8.0);
    let mut top: f64 = 0.01;
    for point in points {
        for cohort in 0..2 {
            if let Some(r) = rate(point, cohort) {
                top = top.max(r * 1.15);
            }
        }
    }
    let top = top.min(1.0);
    let y = |r: f64| HEIGHT - r / top * (HEIGHT - 10.0);
    // Stage bands with their names, then what followed the rollout.
    let mut last_band_end = start;
    for (index, stage) in report.stages.iter().enumerate() {
        let from = parse_rfc3339(&stage.entered).map_or(start, |s| (s * 1000) as f64);
        let to = stage
            .left
            .as_deref()
            .and_then(parse_rfc3339)
            .map_or(end, |s| (s * 1000) as f64);
        let (x0, x1) = (x(from.max(start)), x(to.min(end)));
        last_band_end = last_band_end.max(to);
        let _ = write!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"0\" width=\"{:.1}\" height=\"{HEIGHT}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"14\" class=\"band\">{} ({}%)</text>",
            (x1 - x0).max(0.5),
            BANDS[index % BANDS.len()],
            x0 + 4.0,
            escape(&stage.name),
            stage.traffic
        );
    }
    if report.verdict != "unfinished" && last_band_end < end {
        let label = if report.verdict == "completed" {
            "after: the candidate is stable"
        } else {
            "after the abort: stable only"
        };
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"28\" class=\"band\">{label}</text>",
            x(last_band_end) + 4.0
        );
    }
    // Axes and the scale.
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{HEIGHT}\" x2=\"{WIDTH}\" y2=\"{HEIGHT}\" stroke=\"#334155\"/><line x1=\"{LEFT}\" y1=\"0\" x2=\"{LEFT}\" y2=\"{HEIGHT}\" stroke=\"#334155\"/>"
    );
    for step in 0..=4 {
        let r = top * step as f64 / 4.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{:.1}%</text>",
            LEFT - 4.0,
            y(r) + 4.0,
            r * 100.0
        );
    }
    for (label, t) in [
        (report.stages.first().map(|s| s.entered.clone()), start),
        (
            Some(polctl_lang::eval::time::format_rfc3339(
                (last.start + report.series.bucket_ms) / 1000,
            )),
            end,
        ),
    ] {
        if let Some(label) = label {
            let anchor = if t == start { "start" } else { "end" };
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" class=\"tick\" text-anchor=\"{anchor}\">{}</text>",
                x(t),
                HEIGHT + 16.0,
                escape(&label)
            );
        }
    }
    // One line per cohort, broken where the cohort had no decisions.
    for (cohort, colour) in COLOURS.iter().enumerate() {
        let mut path = String::new();
        let mut pen_down = false;
        for point in points {
            match rate(point, cohort) {
                Some(r) => {
                    let centre = point.start as f64 + report.series.bucket_ms as f64 / 2.0;
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(centre),
                        y(r)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(
                svg,
                "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                path.trim_end()
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

fn rate(hits: u64, decisions: u64) -> Option<f64> {
    (decisions >= MIN_DECISIONS_PER_POINT).then(|| hits as f64 / decisions as f64)
}

/// The page.
pub fn html(report: &SimulationReport, plan: &Plan, from: &str, to: &str) -> String {
    let verdict = match (report.verdict, &report.aborted) {
        ("completed", _) => format!(
            "Completed at {}",
            escape(report.completed_at.as_deref().unwrap_or("?"))
        ),
        ("aborted", Some(a)) => format!(
            "Aborted in stage <b>{}</b> by <code>{}</code>: {} against {} at {}",
            escape(&a.stage),
            escape(&a.trigger),
            escape(&show(&a.trigger, a.value)),
            escape(&show(&a.trigger, a.threshold)),
            escape(&a.time)
        ),
        _ => format!(
            "Unfinished: {}",
            escape(report.unfinished.as_deref().unwrap_or(""))
        ),
    };
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>polctl simulate: {from} → {to}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #0f172a; max-width: 960px; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
.verdict {{ padding: 10px 14px; border-radius: 6px; background: {background}; }}
table {{ border-collapse: collapse; margin: 8px 0; }} td, th {{ padding: 3px 10px; border-bottom: 1px solid #e2e8f0; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ margin: 12px 0; }} figcaption {{ font-weight: 600; margin-bottom: 4px; }}
.band {{ font-size: 11px; fill: #475569; }} .tick {{ font-size: 11px; fill: #334155; }}
.key span {{ display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin: 0 4px 0 12px; }}
code {{ font-size: 12px; }}
</style></head><body>
<h1>Rollout rehearsal: <code>{from}</code> → <code>{to}</code></h1>
<p class="verdict">{verdict}</p>
<p>{lines} traffic lines ({requests} requests, {outcomes} outcomes); stickiness <code>{stickiness}</code>; rollout id <code>{id}</code>.</p>
<p class="key">Cohorts:<span style="background:{c0}"></span>stable<span style="background:{c1}"></span>candidate <small>(per {bucket}: the decisions each cohort enforced, and the candidate's shadow decisions in a shadow stage; a point needs {min} decisions)</small></p>
"#,
        from = escape(from),
        to = escape(to),
        background = if report.verdict == "completed" {
            "#dcfce7"
        } else {
            "#fee2e2"
        },
        lines = report.traffic.lines,
        requests = report.traffic.requests,
        outcomes = report.traffic.outcomes,
        stickiness = escape(&plan.stickiness.to_string()),
        id = escape(&report.rollout_id),
        c0 = COLOURS[0],
        c1 = COLOURS[1],
        bucket = polctl_rollout::duration::format_millis(report.series.bucket_ms),
        min = MIN_DECISIONS_PER_POINT,
    );
    page.push_str(&chart(report, "Deny rate per cohort", |p, c| {
        rate(p.denies[c], p.decisions[c])
    }));
    page.push_str(&chart(report, "Error rate per cohort", |p, c| {
        rate(p.errors[c], p.decisions[c])
    }));
    page.push_str(
        "<h2>Timeline</h2><table><tr><th>time</th><th>event</th><th>stage</th><th>detail</th></tr>",
    );
    for event in &report.timeline {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&event.time),
            event.event,
            escape(&event.stage),
            escape(&event.detail)
        );
    }
    page.push_str("</table><h2>Stages</h2><table><tr><th>stage</th><th>traffic</th><th>cohort</th><th>decisions</th><th>deny rate</th><th>error rate</th></tr>");
    for stage in &report.stages {
        for (name, f) in [
            ("stable", &stage.cohorts.stable),
            ("candidate", &stage.cohorts.candidate),
        ] {
            let _ = write!(
                page,
                "<tr><td>{}</td><td class=n>{}%</td><td>{name}</td><td class=n>{}</td><td class=n>{:.2}%</td><td class=n>{:.2}%</td></tr>",
                escape(&stage.name),
                stage.traffic,
                f.decisions,
                f.deny_rate * 100.0,
                f.error_rate * 100.0
            );
        }
    }
    page.push_str("</table><h2>Divergences</h2>");
    if report.divergences.is_empty() {
        page.push_str("<p>None: both versions decided every compared request the same way.</p>");
    } else {
        page.push_str("<table><tr><th>tool</th><th>change</th><th>old rules → new rules</th><th>requests</th><th>predicted</th></tr>");
        for d in &report.divergences {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{} → {}</td><td><code>{}</code> → <code>{}</code></td><td class=n>{}</td><td>{}</td></tr>",
                escape(&d.tool),
                d.from.as_str(),
                d.to.as_str(),
                escape(&d.old_rules.join(", ")),
                escape(&d.new_rules.join(", ")),
                d.count,
                match d.predicted {
                    Some(true) => "yes",
                    Some(false) => "<b>no</b>",
                    None => "—",
                }
            );
        }
        page.push_str("</table>");
    }
    let m = &report.migration.report;
    let _ = write!(
        page,
        "<h2>State migration</h2><p>Counters: {} carried, {} changed, {} added, {} removed. Approvals{}: {} kept, {} regrouped, {} resolved, {} cancelled.</p>",
        m.counters.carried,
        m.counters.changed,
        m.counters.added,
        m.counters.removed,
        report
            .migration
            .at
            .as_deref()
            .map(|at| format!(" (at cutover, {})", escape(at)))
            .unwrap_or_else(|| " (no cutover)".to_owned()),
        m.approvals.kept,
        m.approvals.regrouped,
        m.approvals.resolved,
        m.approvals.cancelled
    );
    page.push_str("<p><small>Written by <code>polctl simulate</code>. Latency is not judged offline without recorded decision times.</small></p></body></html>\n");
    page
}
