//! The Google Ads API path (`customers/{id}:uploadClickConversions`), free
//! of host calls: for projects Google still allows to upload click
//! conversions there (since 2026-06-15 only those that used it before).
//! Every row's end comes from the answer's partial failures.

use crate::logic::{BatchEnd, Conversion, RowEnd};
use serde_json::{Map, Value, json};

/// The newest Google Ads API version on 2026-11-30 (v26; sunset expected
/// around November 2027): the default of GOOGLE_ADS_API_VERSION.
pub const LATEST_VERSION: &str = "26";

/// The error of projects Google no longer takes click conversions from.
pub const NOT_ALLOWLISTED: &str = "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE";

/// The uploadClickConversions request for `rows` (each an outbox payload).
pub fn upload_request(rows: &[Conversion]) -> Value {
    let conversions: Vec<Value> = rows
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert(c.click_id_kind.clone(), Value::String(c.click_id.clone()));
            if let Some(action) = &c.conversion_action {
                m.insert("conversionAction".into(), Value::String(action.clone()));
            }
            m.insert(
                "conversionDateTime".into(),
                Value::String(c.conversion_time.clone()),
            );
            m.insert("conversionValue".into(), json!(c.value));
            m.insert("currencyCode".into(), Value::String(c.currency.clone()));
            if let Some(order) = &c.order_id {
                m.insert("orderId".into(), Value::String(order.clone()));
            }
            Value::Object(m)
        })
        .collect();
    json!({"conversions": conversions, "partialFailure": true})
}

/// Conversion upload errors that mean Google has this conversion already.
const ALREADY_RECORDED: [&str; 2] = ["CLICK_CONVERSION_ALREADY_EXISTS", "ORDER_ID_ALREADY_IN_USE"];

/// Conversion upload errors worth trying again later (the click is too fresh).
const TRANSIENT: [&str; 2] = ["TOO_RECENT_EVENT", "TOO_RECENT_CONVERSION_ACTION"];

/// Read Google's answer to a batch of `n` rows.
pub fn read_upload_answer(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    n: usize,
) -> BatchEnd {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let top_message = || {
        let e = &json["error"];
        match (e["status"].as_str(), e["message"].as_str()) {
            (Some(st), Some(m)) => format!("{st}: {m}"),
            (None, Some(m)) => m.to_string(),
            _ => String::from_utf8_lossy(body).chars().take(300).collect(),
        }
    };
    if status == 429 || status == 408 || status >= 500 {
        let after = retry_after.and_then(|v| v.trim().parse::<u32>().ok());
        return BatchEnd::Retry(
            format!("Google Ads API answered HTTP {status}: {}", top_message()),
            after,
        );
    }
    // Before any other reading: the whole project is shut out, whatever the
    // status, and every row would fail the same way.
    if !(200..300).contains(&status) && String::from_utf8_lossy(body).contains(NOT_ALLOWLISTED) {
        return BatchEnd::Stop(format!(
            "Google Ads API refused click conversion uploads ({NOT_ALLOWLISTED}): since 2026-06-15 it takes them only from projects that used them before; set GOOGLE_ADS_UPLOAD_API=data-manager (Google's Data Manager API, open to every account) and reload the plugin; the waiting conversions then go that way"
        ));
    }
    if status == 401 || status == 403 {
        return BatchEnd::Stop(format!(
            "Google Ads API answered HTTP {status} ({}); fix the credentials (GOOGLE_ADS_REFRESH_TOKEN with GOOGLE_ADS_CLIENT_ID and GOOGLE_ADS_CLIENT_SECRET, or GOOGLE_ADS_ACCESS_TOKEN) or GOOGLE_ADS_LOGIN_CUSTOMER_ID, then reload the plugin",
            top_message()
        ));
    }
    if status == 404 {
        return BatchEnd::Stop(format!(
            "Google Ads API answered HTTP 404 ({}): the API version in GOOGLE_ADS_API_VERSION may be sunset (v21 ended 2026-08-05, v22 2026-10-07); set a live one (default {LATEST_VERSION}) and reload the plugin",
            top_message()
        ));
    }
    if !(200..300).contains(&status) {
        let why = format!(
            "Google Ads API refused the whole request (HTTP {status}): {}",
            top_message()
        );
        return BatchEnd::Rows(vec![RowEnd::Rejected("REQUEST_REFUSED".into(), why); n]);
    }
    let mut ends = vec![RowEnd::Uploaded; n];
    let details = json["partialFailureError"]["details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for detail in details {
        for error in detail["errors"].as_array().cloned().unwrap_or_default() {
            let index = error["location"]["fieldPathElements"]
                .as_array()
                .and_then(|p| p.iter().find(|e| e["fieldName"] == "conversions"))
                .and_then(|e| e["index"].as_u64())
                .map(|i| i as usize);
            let code = error["errorCode"]
                .as_object()
                .and_then(|m| m.values().next())
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
                .to_string();
            let message = error["message"].as_str().unwrap_or("").to_string();
            let end = if TRANSIENT.contains(&code.as_str()) {
                RowEnd::Retry(format!("{code}: {message}"))
            } else if ALREADY_RECORDED.contains(&code.as_str()) {
                // Sent before (an attempt whose answer was lost): it is in Google.
                RowEnd::Uploaded
            } else {
                RowEnd::Rejected(code, message)
            };
            match index {
                Some(i) if i < n => ends[i] = end,
                // An error with no row is the whole batch's.
                _ => ends.iter_mut().for_each(|e| *e = end.clone()),
            }
        }
    }
    BatchEnd::Rows(ends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logic::{IntakeConfig, validate};

    fn config() -> IntakeConfig {
        IntakeConfig {
            customer_id: Some("1234567890".into()),
            default_action: Some("987654321".into()),
            upload_enabled: true,
            tenant_account: false,
        }
    }

    #[test]
    fn a_project_shut_out_of_click_uploads_stops_with_the_fix() {
        let body = br#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"The caller does not have permission","details":[{"@type":"type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure","errors":[{"errorCode":{"notAllowlistedError":"CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"},"message":"Customer is not allowlisted for accessing this feature."}]}]}}"#;
        assert!(
            matches!(read_upload_answer(403, None, body, 2), BatchEnd::Stop(m) if m.contains("GOOGLE_ADS_UPLOAD_API=data-manager"))
        );
        assert!(
            matches!(read_upload_answer(404, None, b"<html>", 1), BatchEnd::Stop(m) if m.contains("GOOGLE_ADS_API_VERSION"))
        );
    }

    #[test]
    fn partial_failures_end_their_row_only() {
        let body = br#"{"partialFailureError":{"code":3,"message":"x","details":[{"@type":"t","errors":[
            {"errorCode":{"conversionUploadError":"UNPARSEABLE_GCLID"},"message":"The imported gclid could not be decoded.","location":{"fieldPathElements":[{"fieldName":"conversions","index":1}]}},
            {"errorCode":{"conversionUploadError":"TOO_RECENT_EVENT"},"message":"too soon","location":{"fieldPathElements":[{"fieldName":"conversions","index":2}]}}]}]},
            "results":[{"gclid":"a"},{},{}]}"#;
        let BatchEnd::Rows(ends) = read_upload_answer(200, None, body, 3) else {
            panic!()
        };
        assert_eq!(ends[0], RowEnd::Uploaded);
        assert_eq!(
            ends[1],
            RowEnd::Rejected(
                "UNPARSEABLE_GCLID".into(),
                "The imported gclid could not be decoded.".into()
            )
        );
        assert!(matches!(&ends[2], RowEnd::Retry(m) if m.starts_with("TOO_RECENT_EVENT")));
    }

    #[test]
    fn statuses_decide_the_batch() {
        assert_eq!(
            read_upload_answer(429, Some("7"), b"{}", 2),
            BatchEnd::Retry("Google Ads API answered HTTP 429: {}".into(), Some(7))
        );
        assert!(
            matches!(read_upload_answer(401, None, br#"{"error":{"code":401,"message":"missing credential","status":"UNAUTHENTICATED"}}"#, 1), BatchEnd::Stop(m) if m.contains("UNAUTHENTICATED: missing credential"))
        );
        assert!(
            matches!(read_upload_answer(400, None, b"bad", 2), BatchEnd::Rows(r) if r.len() == 2)
        );
    }

    #[test]
    fn the_request_has_googles_shape() {
        let c = validate(br#"{"gclid":"G","timestamp":"2026-09-20T14:32:05-03:00","value":15.5,"currency":"BRL","order_id":"o1"}"#, None, &config()).unwrap();
        let r = upload_request(&[c]);
        assert_eq!(r["partialFailure"], true);
        assert_eq!(r["conversions"][0]["gclid"], "G");
        assert_eq!(
            r["conversions"][0]["conversionDateTime"],
            "2026-09-20 14:32:05-03:00"
        );
        assert_eq!(r["conversions"][0]["conversionValue"], 15.5);
        assert_eq!(r["conversions"][0]["orderId"], "o1");
    }
}
