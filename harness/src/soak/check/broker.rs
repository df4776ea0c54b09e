//! Idempotent publish, from the publish log and the injected duplicate faults.
//!
//! The invariant: a duplicate counts as dropped only when the broker said so.

use ticketing::bus::PublishAck;

use super::{Findings, Verdict};
use crate::soak::faults::{FaultDetail, FaultLog};
use crate::soak::system::Counts;

/// Idempotent publish: republishes with a publish id were dropped; no publish id was stored
/// twice; every entry a crashed relay left unmarked was published again and dropped.
pub fn publish_ids_deduplicate(counts: &Counts, faults: &FaultLog) -> Verdict {
    let mut findings = Findings::default();
    let mut dropped = 0;
    let mut raw = 0;
    for record in &faults.records {
        if let FaultDetail::Duplicate {
            subject,
            with_id,
            raw: raw_result,
        } = &record.detail
        {
            match with_id {
                Some(Ok(PublishAck::Duplicate)) => dropped += 1,
                Some(Ok(PublishAck::Stored { seq })) => findings.push(|| {
                    format!(
                        "{subject} republished with its publish id was stored again (seq {seq})"
                    )
                }),
                Some(Err(why)) => findings.push(|| format!("republishing {subject} failed: {why}")),
                None => {}
            }
            if matches!(raw_result, Ok(PublishAck::Stored { .. })) {
                raw += 1;
            }
        }
    }
    for id in &counts.stored_twice {
        findings.push(|| format!("publish id {id} stored twice"));
    }
    let unmarked = faults.unmarked() as u64;
    if counts.publish_duplicates < unmarked {
        findings.push(|| {
            format!(
                "crashed relays left {unmarked} entries published and unmarked; only {} \
                 republishes were dropped as duplicates",
                counts.publish_duplicates
            )
        });
    }
    findings.verdict(
        "publish ids deduplicate",
        "idempotent publish, section 1",
        format!(
            "{dropped} republishes with their id dropped; {unmarked} entries republished by \
             restarted relays, {} relay publishes dropped; {raw} raw duplicates left to the \
             listeners",
            counts.publish_duplicates
        ),
    )
}
