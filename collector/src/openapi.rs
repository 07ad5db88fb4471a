//! The OpenAPI 3 document, generated from the code: paths, methods and who may call each
//! come from the same [`RouteTable`] that registers the routes; record schemas are derived
//! from the model types (`utoipa::ToSchema`). Served at `/api/v1/openapi.json`.

use std::collections::BTreeSet;

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
    PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::ToSchema;

use crate::model::*;
use crate::people::RouteAccess;

fn method(m: &str) -> Option<HttpMethod> {
    Some(match m {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => return None,
    })
}

/// What a route does, for people reading the document.
fn summary(m: &str, path: &str) -> &'static str {
    match (m, path) {
        ("GET", "/healthz") => "Liveness probe",
        ("GET", "/readyz") => "Readiness probe: the store is open and writable",
        ("POST", "/api/v1/enroll") => "Enroll an agent with a token, its public key and identifying facts",
        ("POST", "/api/v1/login") => "Password login; returns a short-lived API token",
        ("POST", "/api/v1/snapshots") => "Submit a signed snapshot (zstd or identity JSON)",
        ("POST", "/api/v1/heartbeat") => "Submit a signed heartbeat (configuration unchanged)",
        ("POST", "/api/v2/deltas") => "Submit a signed delta against the last accepted inventory (protocol v2); 409 with type urn:census:problem:delta-base-mismatch asks for a full snapshot",
        ("GET", "/api/v1/me") => "The calling person and role",
        ("GET", "/api/v1/cis") => "CIs of a class matching a filter, sorted and paged",
        ("GET", "/api/v1/cis/{id}") => "One CI with relationships both ways and identification evidence; as_of for a past state",
        ("GET", "/api/v1/cis/{id}/history") => "The versions of a CI",
        ("GET", "/api/v1/cis/{id}/diff") => "Drift items between two times",
        ("GET", "/api/v1/cis/{id}/sbom") => "CycloneDX 1.5 SBOM of a computer's software",
        ("GET", "/api/v1/export/cis") => "CSV export of a query, streamed",
        ("GET", "/api/v1/software") => "Software catalogue: products, install counts, version spread",
        ("GET", "/api/v1/impact") => "Impact traversal from a product, OS, subnet or computer",
        ("GET", "/api/v1/conflicts") => "Identity conflicts waiting for a person",
        ("GET", "/api/v1/change-records") => "Change records (review queue), filtered",
        ("GET", "/api/v1/change-records/{id}") => "One change record with its items",
        ("POST", "/api/v1/change-records/{id}/review") => "Accept or reject a record or some of its items",
        ("GET", "/api/v1/changes") => "Changed-since feed of change-record events",
        ("GET", "/api/v1/planned-changes") => "Planned changes",
        ("POST", "/api/v1/planned-changes") => "Create a planned change",
        ("GET", "/api/v1/planned-changes/{id}") => "One planned change",
        ("PUT", "/api/v1/planned-changes/{id}") => "Edit a planned change",
        ("POST", "/api/v1/planned-changes/{id}/cancel") => "Cancel a planned change",
        ("GET", "/api/v1/noise-rules") => "Noise rules",
        ("POST", "/api/v1/noise-rules") => "Create a noise rule",
        ("DELETE", "/api/v1/noise-rules/{id}") => "Delete a noise rule",
        ("GET", "/api/v1/severity-rules") => "Severity rules",
        ("PUT", "/api/v1/severity-rules") => "Replace the severity rules",
        ("GET", "/api/v1/audit") => "The append-only audit log",
        ("GET", "/api/v1/webhooks") => "Webhooks",
        ("POST", "/api/v1/webhooks") => "Register a webhook; its HMAC secret is shown once",
        ("DELETE", "/api/v1/webhooks/{id}") => "Delete a webhook",
        ("GET", "/api/v1/webhooks/deliveries") => "Pending deliveries and dead letters",
        ("POST", "/api/v1/webhooks/deliveries/{id}/retry") => "Make a dead delivery due again",
        ("GET", "/api/v1/openapi.json") => "This document",
        ("GET", "/metrics") => "Prometheus metrics (text format)",
        _ => "",
    }
}

/// The schema a successful response carries, when it is one record.
fn response_schema(m: &str, path: &str) -> Option<&'static str> {
    match (m, path) {
        ("GET", "/api/v1/change-records/{id}") | ("POST", "/api/v1/change-records/{id}/review") => {
            Some("ChangeRecord")
        }
        ("GET", "/api/v1/planned-changes/{id}")
        | ("POST", "/api/v1/planned-changes")
        | ("PUT", "/api/v1/planned-changes/{id}")
        | ("POST", "/api/v1/planned-changes/{id}/cancel") => Some("PlannedChange"),
        ("POST", "/api/v1/noise-rules") => Some("NoiseRule"),
        ("GET", "/api/v1/severity-rules") | ("PUT", "/api/v1/severity-rules") => {
            Some("SeverityRules")
        }
        _ => None,
    }
}

/// Query parameters per route.
fn query_params(m: &str, path: &str) -> &'static [&'static str] {
    match (m, path) {
        ("GET", "/api/v1/cis") => &["class", "filter", "sort", "fields", "limit", "cursor"],
        ("GET", "/api/v1/export/cis") => &["class", "filter", "fields"],
        ("GET", "/api/v1/cis/{id}") => &["as_of", "relationships"],
        ("GET", "/api/v1/cis/{id}/diff") => &["from", "to"],
        ("GET", "/api/v1/software") => &["prefix", "limit", "after"],
        ("GET", "/api/v1/impact") => &["from", "depth", "version", "limit"],
        ("GET", "/api/v1/change-records") => {
            &["state", "severity", "authorization", "ci", "limit", "after"]
        }
        ("GET", "/api/v1/changes") => &["since", "limit"],
        ("GET", "/api/v1/audit") => &["since", "limit"],
        _ => &[],
    }
}

fn add<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().to_string(), T::schema()));
    T::schemas(out);
}

fn problem_schema() -> Schema {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    Schema::Object(
        ObjectBuilder::new()
            .description(Some(
                "RFC 9457 problem details; `field` names the bad input",
            ))
            .property("type", text())
            .property("title", text())
            .property("status", ObjectBuilder::new().schema_type(Type::Integer))
            .property("detail", text())
            .property("field", text())
            .required("status")
            .required("detail")
            .build(),
    )
}

pub fn document(routes: &[RouteAccess]) -> OpenApi {
    let mut schemas = Vec::new();
    add::<ChangeRecord>(&mut schemas);
    add::<PlannedChange>(&mut schemas);
    add::<NoiseRule>(&mut schemas);
    add::<SeverityRules>(&mut schemas);
    add::<AuditEntry>(&mut schemas);
    add::<FeedEvent>(&mut schemas);
    add::<Ci>(&mut schemas);
    add::<Relationship>(&mut schemas);
    add::<IdentityConflict>(&mut schemas);
    add::<Delivery>(&mut schemas);
    schemas.push(("Problem".into(), RefOr::T(problem_schema())));
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            "person",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("census_pat.<id>.<secret>")
                    .description(Some("A person's API token (census-collector user token, or POST /api/v1/login)"))
                    .build(),
            ),
        )
        .security_scheme(
            "agent",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-census-signature",
                "Ed25519 over the domain-separated agent id, seq and SHA-256 of the body, with x-census-agent and x-census-seq",
            ))),
        )
        .build();

    let mut paths = PathsBuilder::new();
    let mut by_path: std::collections::BTreeMap<&str, Vec<&RouteAccess>> = Default::default();
    // The web UI's HTML pages are not part of the JSON API.
    for r in routes.iter().filter(|r| is_api(r)) {
        by_path.entry(r.path).or_default().push(r);
    }
    for (path, entries) in by_path {
        let mut item: Option<PathItem> = None;
        for r in entries {
            let Some(m) = method(r.method) else { continue };
            let params: BTreeSet<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let who = if r.access == ["anonymous"] {
                "Anonymous.".to_string()
            } else if r.access == ["agent"] {
                "Signed by an enrolled agent.".to_string()
            } else {
                format!("Roles: {}.", r.access.join(", "))
            };
            let problem = || {
                ResponseBuilder::new()
                    .description("Refused; the detail names the problem")
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build()
            };
            let ok = match response_schema(r.method, path) {
                Some(name) => ResponseBuilder::new().description("Success").content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(name)))
                        .build(),
                ),
                None => ResponseBuilder::new().description("Success"),
            };
            let mut op = OperationBuilder::new()
                .operation_id(Some(format!(
                    "{}{}",
                    r.method.to_lowercase(),
                    path.replace(['/', '{', '}', '-', '.'], "_")
                )))
                .summary(Some(summary(r.method, path)))
                .description(Some(who))
                .tag(path.split('/').nth(3).unwrap_or("probes"))
                .response("200", ok.build())
                .response("400", problem())
                .response("401", problem())
                .response("403", problem())
                .response("404", problem())
                .response("422", problem())
                .response("503", problem());
            for p in &params {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(*p)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
            for q in query_params(r.method, path) {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(*q)
                        .parameter_in(ParameterIn::Query)
                        .required(Required::False)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
            if r.access == ["agent"] {
                op = op.security(SecurityRequirement::new("agent", Vec::<String>::new()));
            } else if r.access != ["anonymous"] {
                op = op.security(SecurityRequirement::new("person", Vec::<String>::new()));
            }
            item = Some(match item {
                None => PathItem::new(m, op.build()),
                Some(mut existing) => {
                    let other = PathItem::new(m, op.build());
                    existing.merge_operations(other);
                    existing
                }
            });
        }
        if let Some(item) = item {
            paths = paths.path(path, item);
        }
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Census collector API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Agent ingest (signed snapshots), the CMDB query API, drift review, planned changes, rules, webhooks and the audit log. Errors are application/problem+json."))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}

/// A JSON API route (not a web UI page or form).
pub fn is_api(r: &RouteAccess) -> bool {
    !r.path.starts_with("/ui")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_covers_every_route_with_security_and_resolvable_refs() {
        let table = crate::api::route_table(crate::people::RouteTable::listing());
        let doc: serde_json::Value =
            serde_json::from_str(&crate::api::openapi_document().to_json().unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut ids = BTreeSet::new();
        assert!(
            doc["paths"]
                .as_object()
                .unwrap()
                .keys()
                .all(|p| !p.starts_with("/ui")),
            "UI pages stay out of the API document"
        );
        for r in table.entries.iter().filter(|r| is_api(r)) {
            let op = &doc["paths"][r.path][r.method.to_lowercase()];
            assert!(op.is_object(), "{} {} documented", r.method, r.path);
            assert!(
                ids.insert(op["operationId"].as_str().unwrap().to_string()),
                "unique id"
            );
            assert!(
                !op["summary"].as_str().unwrap_or("").is_empty(),
                "{} {} has a summary",
                r.method,
                r.path
            );
            assert!(op["responses"]["200"].is_object());
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(
                secured,
                r.access != ["anonymous"],
                "{} {}",
                r.method,
                r.path
            );
            for seg in r.path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(['{', '}']);
                assert!(
                    op["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{} {} declares path parameter {name}",
                    r.method,
                    r.path
                );
            }
        }
        // Every $ref points at a schema that exists.
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "schema {name} exists"
            );
        }
        assert!(doc["components"]["securitySchemes"]["person"].is_object());
    }
}
