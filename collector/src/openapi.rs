//! The OpenAPI 3 document, generated from the code: paths, methods and who may call each
//! come from the same [`RouteTable`] that registers the routes; record schemas are derived
//! from the model types (`utoipa::ToSchema`). Served at `/api/v1/openapi.json`.

use std::collections::BTreeSet;

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
    PathItem, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::{IntoParams, ToSchema};

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
        ("PUT", "/api/v1/change-records/{id}/tickets") => "Link a record to ITSM tickets (replaces its list)",
        ("GET", "/api/v1/vulns") => "The fleet against every advisory held, most severe first",
        ("GET", "/api/v1/vulns/{id}") => "One advisory: the hosts it holds on and the services they run",
        ("GET", "/api/v1/cis/{id}/vulns") => "One computer's vulnerable packages",
        ("GET", "/api/v1/export/vulns") => "The fleet's advisories as CSV (formula-guarded cells)",
        ("GET", "/api/v1/changes") => "Changed-since feed of change-record and register events",
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
        ("GET", "/api/v1/register/fields") => "Asset register fields with their types and limits",
        ("GET", "/api/v1/register/settings") => "Asset register settings: lifecycle status labels and source precedence",
        ("PUT", "/api/v1/register/settings") => "Replace the asset register settings",
        ("GET", "/api/v1/cis/{id}/register") => "A CI's asset register: each field's value, which source set it and when",
        ("PATCH", "/api/v1/cis/{id}/register") => "Edit a CI's asset register as a person (checked against source precedence; a history version, never drift)",
        ("POST", "/api/v1/register/records") => "Record a computer before discovery (ordered, in stock): the first agent reporting its serial becomes it",
        ("POST", "/api/v1/register/import") => "Import a register CSV file: a dry run by default (new, matched, ambiguous and invalid rows with line numbers; nothing written), dry_run=false applies every row or none",
        ("GET", "/api/v1/register/export") => "The register as CSV in the import's layout (formula-guarded cells)",
        ("GET", "/api/v1/register/reconciliation") => "Reconciliation items: where discovery disagrees with a register value a higher source holds (e.g. a serial a person recorded)",
        ("POST", "/api/v1/cis/{id}/register/reconciliation/{field}") => "Decide a reconciliation item: accept the discovered value (the field is discovery's again) or keep the held one",
        ("GET", "/api/v1/services") => "Business and application services",
        ("POST", "/api/v1/services") => "Make a service: owner, criticality, support group, what it depends on and runs on (a cycle of dependencies is refused)",
        ("GET", "/api/v1/services/impact") => "The services affected by a computer, a product version, a subnet or a change record, most critical first, with the path that links them",
        ("GET", "/api/v1/services/{id}") => "A service (as of a past time with as_of)",
        ("PUT", "/api/v1/services/{id}") => "Change a service (a new version in its history)",
        ("DELETE", "/api/v1/services/{id}") => "Delete a service (refused while another depends on it; its history stays)",
        ("GET", "/api/v1/services/{id}/history") => "Every version of a service",
        ("GET", "/api/v1/baselines") => "Every configuration baseline: the computers it applies to (a filter) and its rules",
        ("POST", "/api/v1/baselines") => "States a baseline (change managers, admins): name, applies_to filter, rules (package_installed with a version range, package_absent, listening_only_on, service_enabled); audited",
        ("GET", "/api/v1/baselines/{id}") => "One baseline",
        ("PUT", "/api/v1/baselines/{id}") => "Replaces a baseline (a new version; expected_version refuses a stale edit with 409); audited",
        ("DELETE", "/api/v1/baselines/{id}") => "Deletes a baseline; audited",
        ("GET", "/api/v1/baselines/{id}/compliance") => "A baseline's compliance now: counts per verdict and per rule over every host it applies to, and the hosts (failing first) with each rule's verdict and evidence",
        ("GET", "/api/v1/baselines/{id}/compliance/export") => "A baseline's compliance as CSV, one row per host and rule",
        ("GET", "/api/v1/baselines/{id}/trend") => "A baseline's daily compliance counts, oldest first",
        ("GET", "/api/v1/map") => "The dependency map around a computer: connects_to edges (client -> server, protocol, port, each side's process, samples, first and last seen, who reported it) to a depth of 1 to 4 hops; peers no single computer holds are endpoint groups by /24 or /64",
        ("GET", "/api/v1/map/edges") => "The edges of the dependency map around a computer as CSV",
        ("GET", "/api/v1/map/endpoints") => "The external endpoints the fleet talks to: peers no single computer holds (hosts without an agent, SaaS ranges, NAT pools), grouped by /24 or /64 as on the map, with their addresses, the ports each way, the computers talking to them, samples and first and last seen; the groups most computers reach first",
        ("GET", "/api/v1/map/endpoints/export") => "The external endpoint groups as CSV, a row per group",
        ("GET", "/api/v1/services/{id}/map") => "A service's dependency map: the service, the computers it runs on, and their network neighbourhood to a depth",
        ("GET", "/api/v1/services/{id}/map/edges") => "The edges of a service's dependency map as CSV",
        ("GET", "/api/v1/services/{id}/vulns") => "A service's vulnerabilities: the advisories that hold on the computers it and every service it depends on run on, most severe first, with host counts",
        ("GET", "/api/v1/services/{id}/dependencies") => "Everything a service depends on: services, transitively, and the computers each runs on",
        ("GET", "/api/v1/health") => "CMDB health: completeness, correctness and compliance per class with a score, and the defects (each counted once) filtered by class or kind",
        ("GET", "/api/v1/health/trend") => "CMDB health's daily scores, oldest first",
        ("GET", "/api/v1/health/settings") => "CMDB health settings: required attributes per class, how long an agent may be silent",
        ("PUT", "/api/v1/health/settings") => "Replace the CMDB health settings",
        ("GET", "/api/v1/register/expiring") => "Licences and warranties that expire within N days (or have expired)",
        ("GET", "/api/v1/licences") => "Licences with their consumption: computers installing a covered product version, over-deployment and unused seats",
        ("POST", "/api/v1/licences") => "Record a licence: a product pattern, a version range in the package's order, seats, expiry, cost",
        ("GET", "/api/v1/licences/{id}") => "One licence, its consumption and the computers using it",
        ("PUT", "/api/v1/licences/{id}") => "Edit a licence",
        ("DELETE", "/api/v1/licences/{id}") => "Delete a licence",
        ("GET", "/api/v1/software/titles") => "Software titles: packages rolled into products by the applied title rules, with publisher, category, computers and versions (newest first in the package's own order)",
        ("GET", "/api/v1/software/rules") => "The software title rules: the draft people edit and the applied set the CMDB is titled with",
        ("PUT", "/api/v1/software/rules") => "Replace the draft title rules (ordered; the first matching rule decides a product's publisher, product and category); nothing changes until a replay",
        ("POST", "/api/v1/software/rules/replay") => "Replay the draft title rules over every software product: a dry run by default (what changes, per-rule counts), dry_run=false makes the draft the applied set",
        ("GET", "/api/v1/openapi.json") => "This document",
        ("GET", "/metrics") => "Prometheus metrics (text format)",
        _ => "",
    }
}

/// Collects the schemas a type needs and answers a reference to it.
pub type SchemaFn = fn(&mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema>;
/// The parameters a query or header struct declares.
pub type ParamsFn = fn() -> Vec<Parameter>;

/// A body: its media type and, for JSON, its schema.
#[derive(Debug, Clone, Copy)]
pub struct Payload {
    pub content_type: &'static str,
    pub schema: Option<SchemaFn>,
}

/// What one route takes and answers, declared where the route is registered (from the
/// types its handler parses and returns), so the document cannot drift from the code.
#[derive(Debug, Clone, Default)]
pub struct OpDoc {
    pub query: Option<ParamsFn>,
    /// Header structs, each adding its headers.
    pub headers: Vec<ParamsFn>,
    /// Request bodies, one per accepted media type.
    pub body: Vec<Payload>,
    /// The success status (200 when unset) and what it carries.
    pub success: Option<u16>,
    pub answer: Option<Payload>,
    /// Refusals beyond those every route of its kind can give.
    pub refusals: Vec<u16>,
}

fn schema_ref<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema> {
    add::<T>(out);
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

fn params_of<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

fn headers_of<T: IntoParams>() -> Vec<Parameter> {
    T::into_params(|| Some(ParameterIn::Header))
}

/// Says what a route takes and answers; returned by every route registration, and used up
/// by the call that declares the answer, so a route cannot be registered without one.
#[must_use = "declare what the route answers (.json::<T>(), .created::<T>(), .no_content(), .text(..))"]
pub struct Doc<'a>(pub(crate) &'a mut OpDoc);

impl Doc<'_> {
    /// Query parameters: the struct the handler decodes the query string into.
    pub fn query<T: IntoParams>(self) -> Self {
        self.0.query = Some(params_of::<T>);
        self
    }

    /// Request headers the route reads (the agent's signed envelope, ...).
    pub fn headers<T: IntoParams>(self) -> Self {
        self.0.headers.push(headers_of::<T>);
        self
    }

    /// A JSON request body: the struct the handler decodes it into.
    pub fn body<T: ToSchema>(self) -> Self {
        self.0.body.push(Payload {
            content_type: "application/json",
            schema: Some(schema_ref::<T>),
        });
        self
    }

    /// A request body of another media type (its bytes are not described further).
    pub fn raw_body(self, content_type: &'static str) -> Self {
        self.0.body.push(Payload {
            content_type,
            schema: None,
        });
        self
    }

    /// 200 with a JSON body.
    pub fn json<T: ToSchema>(self) {
        self.answer(200, "application/json", Some(schema_ref::<T>))
    }

    /// 201 with the created thing as JSON.
    pub fn created<T: ToSchema>(self) {
        self.answer(201, "application/json", Some(schema_ref::<T>))
    }

    /// 204 and no body.
    pub fn no_content(self) {
        self.0.success = Some(204);
        self.0.answer = None;
    }

    /// 200 with a body of this media type (text, CSV, an external JSON format).
    pub fn text(self, content_type: &'static str) {
        self.answer(200, content_type, None)
    }

    /// Refusals this route gives beyond those of every route of its kind.
    pub fn refuses(self, statuses: &[u16]) -> Self {
        self.0.refusals.extend_from_slice(statuses);
        self
    }

    fn answer(self, status: u16, content_type: &'static str, schema: Option<SchemaFn>) {
        self.0.success = Some(status);
        self.0.answer = Some(Payload {
            content_type,
            schema,
        });
    }
}

/// A refusal: problem details.
fn problem(status: u16) -> ResponseBuilder {
    let description = match status {
        400 => "Bad request: a parameter or header is malformed; `field` names it",
        401 => "No valid credential",
        403 => "The credential may not do this",
        404 => "No such thing",
        409 => "Conflicts with the current state",
        413 => "Body too large; the detail gives the limit",
        415 => "Unsupported media type or content encoding",
        422 => "The body is not what this route takes; `field` names the part",
        429 => "Too many requests; try again after Retry-After",
        503 => "Temporarily unavailable (the store); try again after Retry-After",
        _ => "Refused; the detail names the problem",
    };
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

/// The refusals a route can give: those of every route of its kind, and its own.
fn refusals(r: &RouteAccess, has_path_params: bool) -> BTreeSet<u16> {
    let mut out: BTreeSet<u16> = r.doc.refusals.iter().copied().collect();
    match r.credential {
        "signature" => out.extend([400, 401, 403, 409, 413, 415, 422, 429, 503]),
        "bearer" => {
            out.extend([401, 403, 503]);
            if r.doc.query.is_some() {
                out.insert(400);
            }
            if has_path_params {
                out.insert(404);
            }
            if !r.doc.body.is_empty() {
                out.extend([413, 415, 422]);
            }
        }
        _ => {}
    }
    out
}

fn add<T: ToSchema>(out: &mut Vec<(String, RefOr<Schema>)>) {
    out.push((T::name().to_string(), T::schema()));
    T::schemas(out);
}

pub fn document(routes: &[RouteAccess]) -> OpenApi {
    document_and_clashes(routes).0
}

/// Names given to two different schemas: utoipa keeps one of them, silently, and a route
/// then documents another type's body (two `Impact`s and two `SettingsRequest`s did).
fn name_clashes(schemas: &[(String, RefOr<Schema>)]) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<&str, String> = Default::default();
    let mut clashes = BTreeSet::new();
    for (name, schema) in schemas {
        let json = serde_json::to_string(schema).unwrap_or_default();
        match seen.get(name.as_str()) {
            Some(other) if *other != json => {
                clashes.insert(name.clone());
            }
            Some(_) => {}
            None => {
                seen.insert(name, json);
            }
        }
    }
    clashes.into_iter().collect()
}

/// The document, and the schema names that clash in it (see [`name_clashes`]).
pub fn document_and_clashes(routes: &[RouteAccess]) -> (OpenApi, Vec<String>) {
    // The routes' own types bring their schemas (below); these are the refusals' body and
    // the record types no route answers whole (query results carry their fields).
    let mut schemas = Vec::new();
    add::<census_shared::protocol::Problem>(&mut schemas);
    add::<Ci>(&mut schemas);
    add::<Relationship>(&mut schemas);
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
            let doc = &r.doc;
            let mut ok = ResponseBuilder::new().description("Success");
            if let Some(answer) = doc.answer {
                let schema = answer.schema.map(|f| f(&mut schemas));
                ok = ok.content(
                    answer.content_type,
                    ContentBuilder::new().schema(schema).build(),
                );
            }
            let success = doc.success.unwrap_or(200);
            let mut op = OperationBuilder::new()
                .operation_id(Some(format!(
                    "{}{}",
                    r.method.to_lowercase(),
                    path.replace(['/', '{', '}', '-', '.'], "_")
                )))
                .summary(Some(summary(r.method, path)))
                .description(Some(who))
                .tag(path.split('/').nth(3).unwrap_or("probes"))
                .response(success.to_string(), ok.build());
            for status in refusals(r, !params.is_empty()) {
                let mut refusal = problem(status);
                if matches!(status, 429 | 503) {
                    refusal = refusal.header(
                        "Retry-After",
                        utoipa::openapi::HeaderBuilder::new()
                            .schema(ObjectBuilder::new().schema_type(Type::Integer))
                            .description(Some("Seconds to wait before trying again"))
                            .build(),
                    );
                }
                op = op.response(status.to_string(), refusal.build());
            }
            if !doc.body.is_empty() {
                let mut body = RequestBodyBuilder::new().required(Some(Required::True));
                for payload in &doc.body {
                    let schema = payload.schema.map(|f| f(&mut schemas)).unwrap_or_else(|| {
                        RefOr::T(Schema::Object(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                                    utoipa::openapi::KnownFormat::Binary,
                                )))
                                .build(),
                        ))
                    });
                    body = body.content(
                        payload.content_type,
                        ContentBuilder::new().schema(Some(schema)).build(),
                    );
                }
                op = op.request_body(Some(body.build()));
            }
            for p in &params {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(*p)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                );
            }
            for p in doc.query.map(|f| f()).unwrap_or_default() {
                op = op.parameter(p);
            }
            for p in doc.headers.iter().flat_map(|f| f()) {
                op = op.parameter(p);
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
    let clashes = name_clashes(&schemas);
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

    let doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Census collector API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Agent ingest (signed snapshots), the CMDB query API, drift review, planned changes, rules, webhooks and the audit log. Errors are application/problem+json."))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build();
    (doc, clashes)
}

/// A JSON API route (not a web UI page or form).
pub fn is_api(r: &RouteAccess) -> bool {
    !r.path.starts_with("/ui")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_types_never_share_a_schema_name() {
        let table = crate::api::route_table(crate::people::RouteTable::listing());
        let (_, clashes) = document_and_clashes(&table.entries);
        assert!(
            clashes.is_empty(),
            "schema names given to different types (rename one): {clashes:?}"
        );
    }

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
            let success: Vec<&String> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with('2'))
                .collect();
            assert_eq!(success.len(), 1, "{} {} has one success", r.method, r.path);
            let answer = &op["responses"][success[0].as_str()]["content"]["application/json"];
            if answer.is_object() && r.path != "/api/v1/openapi.json" {
                assert!(
                    answer["schema"].is_object(),
                    "{} {} says what its JSON answer holds",
                    r.method,
                    r.path
                );
            }
            let bodiless = r.path.ends_with("/cancel")
                || r.path.ends_with("/retry")
                || r.path.ends_with("/replay");
            let csv = crate::http::CSV_BODY_PATHS.contains(&r.path);
            if csv {
                assert!(
                    op["requestBody"]["content"]["text/csv"].is_object(),
                    "{} {} takes a CSV file",
                    r.method,
                    r.path
                );
            }
            if matches!(r.method, "POST" | "PUT") && !bodiless && !csv {
                let body = &op["requestBody"]["content"]["application/json"];
                assert!(
                    body.is_object(),
                    "{} {} has a request body",
                    r.method,
                    r.path
                );
                if r.credential != "signature" {
                    assert!(
                        body["schema"]["$ref"].is_string(),
                        "{} {}",
                        r.method,
                        r.path
                    );
                }
            }
            if r.method == "DELETE" {
                assert_eq!(success[0], "204", "{}", r.path);
            }
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

    fn param<'a>(doc: &'a serde_json::Value, path: &str, name: &str) -> &'a serde_json::Value {
        let params = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .or_else(|| doc["paths"][path]["post"]["parameters"].as_array())
            .unwrap();
        &params.iter().find(|p| p["name"] == name).unwrap()["schema"]
    }

    /// A time the document's pattern refuses is one the server refuses; one it admits is
    /// one the server takes unless the calendar forbids it.
    #[test]
    fn the_time_pattern_agrees_with_the_time_parser() {
        let doc: serde_json::Value =
            serde_json::from_str(&crate::api::openapi_document().to_json().unwrap()).unwrap();
        let pattern = param(&doc, "/api/v1/cis/{id}", "as_of")["pattern"]
            .as_str()
            .unwrap()
            .to_string();
        for path in ["/api/v1/cis/{id}/diff"] {
            for name in ["from", "to"] {
                assert_eq!(param(&doc, path, name)["pattern"], pattern.as_str());
            }
        }
        let re = regex::Regex::new(&pattern).unwrap();
        let now = chrono::Utc::now();
        let parses = |t: &str| crate::query::eval::parse_time(t, now).is_some();
        for admitted in [
            "now",
            "-7d",
            "-12h",
            "-30m",
            "2026-11-01",
            "2026-11-1",
            "2026-1-01",
            "2026-11-01T10:00:00Z",
            "2026-11-01t10:00:00z",
            "2026-11-01T10:00:00.123456789+02:00",
        ] {
            assert!(re.is_match(admitted), "{admitted}");
            assert!(parses(admitted), "{admitted}");
        }
        for impossible in ["2026-02-31", "2026-13-01T00:00:00Z"] {
            assert!(
                re.is_match(impossible) && !parses(impossible),
                "{impossible}"
            );
        }
        for refused in [
            "",
            "7d",
            "-7",
            "-7w",
            "+7d",
            "yesterday",
            "2026-11-01T10:00Z",
            "2026-11-01 10:00:00",
            "2026-11-01T10:00:00",
            "2026-11-1T10:00:00Z",
            "now ",
            " now",
            "2026-11-01T10:00:00+0200",
            "+2026-11-01",
            "12026-11-01",
            "2026-011-01",
        ] {
            assert!(!re.is_match(refused), "{refused}");
            assert!(!parses(refused), "{refused}");
        }
    }

    /// The limits in the document are the ones the handlers enforce.
    #[test]
    fn documented_limits_are_the_enforced_ones() {
        use crate::query::views;
        let doc: serde_json::Value =
            serde_json::from_str(&crate::api::openapi_document().to_json().unwrap()).unwrap();
        let schema = |name: &str| &doc["components"]["schemas"][name];
        let max_comment = crate::ops::MAX_COMMENT_CHARS as u64;
        assert_eq!(
            schema("ReviewRequest")["properties"]["comment"]["maxLength"],
            max_comment
        );
        assert_eq!(
            schema("NoiseRequest")["properties"]["note"]["maxLength"],
            max_comment
        );
        assert_eq!(
            schema("WebhookRequest")["properties"]["url"]["maxLength"],
            2048
        );
        for path in [
            "/api/v1/cis",
            "/api/v1/software",
            "/api/v1/changes",
            "/api/v1/audit",
        ] {
            assert_eq!(
                param(&doc, path, "limit")["maximum"],
                crate::query::MAX_PAGE as u64,
                "{path}"
            );
        }
        assert_eq!(
            param(&doc, "/api/v1/cis/{id}", "relationships")["maximum"],
            views::MAX_LISTED_RELATIONSHIPS as u64
        );
        assert_eq!(
            param(&doc, "/api/v1/impact", "depth")["maximum"],
            views::MAX_IMPACT_DEPTH as u64
        );
        assert_eq!(
            param(&doc, "/api/v1/impact", "limit")["maximum"],
            views::MAX_IMPACT_NODES as u64
        );
        assert_eq!(
            param(&doc, "/api/v1/snapshots", "x-census-agent")["maxLength"],
            census_shared::limits::MAX_AGENT_ID_BYTES as u64
        );
        assert_eq!(crate::changes_api::MAX_PAGE, crate::query::MAX_PAGE);
        // Enumerations are the server's own names.
        let states = &param(&doc, "/api/v1/change-records", "state");
        let text = states.to_string();
        for s in ["open", "accepted", "rejected"] {
            assert!(text.contains(&format!("\"{s}\"")), "{text}");
        }
    }
}
