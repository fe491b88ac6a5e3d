//! Rhai values to JSON and back: params, result data and pool params
//! cross this boundary.

use rhai::{Array, Dynamic, Map};
use serde_json::Value;

use super::api::device::Device;
use super::api::host::Host;
use super::api::job::Job;

/// JSON → Rhai.
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.clone().into(),
        Value::Array(a) => Dynamic::from_array(a.iter().map(to_dynamic).collect::<Array>()),
        Value::Object(o) => Dynamic::from_map(
            o.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect::<Map>(),
        ),
    }
}

/// Rhai → JSON; a host, device or job becomes the text `print` shows
/// (`Device(eth0 on h1)`), other custom types their type name.
pub fn to_json(d: &Dynamic) -> Value {
    let d = &d.flatten_clone();
    if d.is_unit() {
        Value::Null
    } else if let Some(b) = d.clone().try_cast::<bool>() {
        Value::Bool(b)
    } else if let Some(i) = d.clone().try_cast::<i64>() {
        Value::from(i)
    } else if let Some(f) = d.clone().try_cast::<f64>() {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    } else if d.is_string() || d.is_char() {
        Value::String(d.to_string())
    } else if d.is_array() {
        let a = d.clone().cast::<Array>();
        Value::Array(a.iter().map(to_json).collect())
    } else if d.is_map() {
        let m = d.clone().cast::<Map>();
        Value::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect())
    } else if let Some(x) = d.read_lock::<Device>() {
        Value::String(x.to_string())
    } else if let Some(x) = d.read_lock::<Host>() {
        Value::String(x.to_string())
    } else if let Some(x) = d.read_lock::<Job>() {
        Value::String(x.to_string())
    } else {
        Value::String(d.to_string())
    }
}

/// A map of JSON values as a Rhai map.
pub fn map_to_dynamic<'a>(it: impl IntoIterator<Item = (&'a String, &'a Value)>) -> Map {
    it.into_iter()
        .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let v = json!({"a": [1, 2.5, "x", true, null], "m": {"k": -3}});
        assert_eq!(to_json(&to_dynamic(&v)), v);
    }
}
