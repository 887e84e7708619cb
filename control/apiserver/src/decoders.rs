//! Every decoder a request's bytes meet, behind one entry point, for the
//! fuzz target (`fuzz/`) and the no-panic test below: paths, query strings,
//! bodies (JSON, YAML, protobuf), patches of every type, selectors and
//! continue tokens. None may panic or hang, whatever the input.

use crate::{patch, protobuf, request, selector};
use serde_json::json;

/// Feeds `data` to every decoder. Errors are expected; panics are bugs.
pub fn decode_everything(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = request::parse_target(&text);
    let _ = request::Params::parse(Some(&text));
    for ct in ["application/json", "application/yaml", "text/plain"] {
        let _ = request::parse_object(data, ct);
    }
    let _ = protobuf::decode(data);
    let original = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}, "finalizers": ["x"]},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}]}]}}},
    });
    for ty in [
        patch::PatchType::Json,
        patch::PatchType::Merge,
        patch::PatchType::StrategicMerge,
        patch::PatchType::Apply,
    ] {
        let _ = patch::apply(ty, &original, data, "Deployment");
        let _ = patch::apply(ty, &original, data, "Unregistered");
    }
    let _ = selector::LabelSelector::parse(&text);
    let _ = selector::FieldSelector::parse(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds shaped like real requests, then deterministic mutations of
    /// them: flipped bytes, truncations, splices.
    #[test]
    fn no_input_panics() {
        let seeds: Vec<Vec<u8>> = vec![
            br#"{"metadata":{"name":"x","labels":{"a":"b"}},"spec":{"template":{"spec":{"containers":[{"name":"c","$patch":"delete"}]}}}}"#.to_vec(),
            br#"[{"op":"replace","path":"/spec/template","value":{}},{"op":"test","path":"/metadata/name","value":"d"}]"#.to_vec(),
            br#"{"$setElementOrder/containers":[{"name":"c"}],"$retainKeys":["a"],"metadata":{"$deleteFromPrimitiveList/finalizers":["x"]}}"#.to_vec(),
            b"app in (a,b),!tier,env!=prod,x>3".to_vec(),
            b"metadata.name=a\\,b,spec.nodeName!=".to_vec(),
            b"labelSelector=a%3Db&limit=10&continue=eyJydiI6MX0&watch=1&timeoutSeconds=99999999999999999999".to_vec(),
            b"/api/v1/namespaces/default/pods/x/status".to_vec(),
            b"/apis/apps/v1/namespaces//deployments".to_vec(),
            b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret\x12\x04\x0a\x02\x0a\x00".to_vec(),
            b"apiVersion: v1\nkind: Pod\nmetadata: {name: [1, {a: *b}]}\n".to_vec(),
            vec![0xff; 64],
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".repeat(64),
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            decode_everything(seed);
            for _ in 0..300 {
                let mut m = seed.clone();
                match next() % 4 {
                    0 if !m.is_empty() => {
                        let i = (next() as usize) % m.len();
                        m[i] ^= 1 << (next() % 8);
                    }
                    1 if !m.is_empty() => m.truncate((next() as usize) % m.len()),
                    2 => {
                        let other = &seeds[(next() as usize) % seeds.len()];
                        let at = if m.is_empty() {
                            0
                        } else {
                            (next() as usize) % m.len()
                        };
                        m.splice(at..at, other.iter().copied());
                    }
                    _ => m.push((next() % 256) as u8),
                }
                decode_everything(&m);
            }
        }
    }
}
