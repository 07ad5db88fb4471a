//! People's routes for the asset register: its fields, its settings, and a CI's register
//! (read, and edited by asset managers and administrators). HTTP only: each write is an
//! operation of [`crate::ops::register`], shared with the web UI and the CLI.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::{blocking, query_params, read_json, ApiProblem, AppState};
use crate::model::licence::Licence;
use crate::model::register::{self, FieldDef, RegisterSettings, SourceRank, StatusLabel};
use crate::model::*;
use crate::ops::licences::LicenceRequest;
use crate::ops::register::{
    self as op, NewRecord, ReconciliationList, RegisterEdit, RegisterView, ResolveRequest,
};
use crate::ops::register_csv::{self, ImportMode, ImportReport, MAX_IMPORT_BYTES};
use crate::people::{Allowed, Person, RouteTable};
use crate::query::licences::{ComputerRef, Expiring, LicenceUse};

const READERS: Allowed = Allowed::AnyPerson;
/// Who edits the register: people whose job it is, and administrators.
pub const REGISTER_EDITORS: Allowed = Allowed::Roles(&[Role::AssetManager, Role::Admin]);
const ADMINS: Allowed = Allowed::Roles(&[Role::Admin]);

pub fn routes(table: &mut RouteTable) {
    use axum::routing::{delete, patch, put};
    table
        .people("GET", "/api/v1/register/fields", READERS, get(fields))
        .json::<RegisterFields>();
    table
        .people(
            "GET",
            "/api/v1/register/settings",
            READERS,
            get(get_settings),
        )
        .json::<RegisterSettings>();
    table
        .people(
            "PUT",
            "/api/v1/register/settings",
            ADMINS,
            put(put_settings),
        )
        .body::<SettingsRequest>()
        .json::<RegisterSettings>();
    table
        .people(
            "GET",
            "/api/v1/cis/{id}/register",
            READERS,
            get(get_register),
        )
        .json::<RegisterView>();
    table
        .people(
            "PATCH",
            "/api/v1/cis/{id}/register",
            REGISTER_EDITORS,
            patch(edit_register),
        )
        .body::<RegisterEdit>()
        .refuses(&[409])
        .json::<RegisterView>();
    table
        .people(
            "POST",
            "/api/v1/register/records",
            REGISTER_EDITORS,
            post(create_record),
        )
        .body::<NewRecord>()
        .refuses(&[409])
        .created::<RegisterView>();
    table
        .people(
            "POST",
            "/api/v1/register/import",
            REGISTER_EDITORS,
            post(import),
        )
        .query::<ImportParams>()
        .raw_body("text/csv")
        .refuses(&[409, 413, 415, 422])
        .json::<ImportReport>();
    table
        .people(
            "GET",
            "/api/v1/register/export",
            REGISTER_EDITORS,
            get(export),
        )
        .query::<ExportParams>()
        .text("text/csv");
    table
        .people(
            "GET",
            "/api/v1/register/reconciliation",
            READERS,
            get(reconciliation),
        )
        .query::<ReconciliationParams>()
        .json::<ReconciliationList>();
    table
        .people(
            "POST",
            "/api/v1/cis/{id}/register/reconciliation/{field}",
            REGISTER_EDITORS,
            post(resolve),
        )
        .body::<ResolveRequest>()
        .refuses(&[409])
        .json::<RegisterView>();
    table
        .people("GET", "/api/v1/register/expiring", READERS, get(expiring))
        .query::<ExpiringParams>()
        .json::<Expiring>();
    table
        .people("GET", "/api/v1/licences", READERS, get(list_licences))
        .json::<LicenceList>();
    table
        .people(
            "POST",
            "/api/v1/licences",
            REGISTER_EDITORS,
            post(create_licence),
        )
        .body::<LicenceRequest>()
        .refuses(&[409])
        .created::<Licence>();
    table
        .people("GET", "/api/v1/licences/{id}", READERS, get(get_licence))
        .json::<LicenceDetail>();
    table
        .people(
            "PUT",
            "/api/v1/licences/{id}",
            REGISTER_EDITORS,
            put(update_licence),
        )
        .body::<LicenceRequest>()
        .json::<Licence>();
    table
        .people(
            "DELETE",
            "/api/v1/licences/{id}",
            REGISTER_EDITORS,
            delete(delete_licence),
        )
        .no_content();
}

/// Every licence with its consumption.
#[derive(Debug, Serialize, ToSchema)]
struct LicenceList {
    licences: Vec<LicenceUse>,
}

/// One licence, its consumption and the computers using it.
#[derive(Debug, Serialize, ToSchema)]
struct LicenceDetail {
    #[serde(rename = "use")]
    usage: LicenceUse,
    /// Sorted by name, at most 1,000.
    computers: Vec<ComputerRef>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ExpiringParams {
    /// Within this many days from today (0 to 3650; default 30); what has expired already
    /// is always listed.
    #[param(minimum = 0, maximum = 3650)]
    days: Option<u32>,
}

pub const MAX_EXPIRING_DAYS: u32 = 3650;

async fn expiring(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: ExpiringParams = query_params(q)?;
    let days = crate::http::bounded("days", p.days, 30, 0, MAX_EXPIRING_DAYS)?;
    let store = st.store.clone();
    let report = blocking(move || {
        crate::query::licences::expiring(store.as_ref(), days, chrono::Utc::now())
    })
    .await?;
    Ok(Json(report).into_response())
}

async fn list_licences(
    State(st): State<Arc<AppState>>,
    Extension(_person): Extension<Person>,
) -> Reply {
    let store = st.store.clone();
    let licences = blocking(move || {
        let all = store.list_licences()?;
        Ok(crate::query::licences::usage(store.as_ref(), &all, chrono::Utc::now(), None)?.0)
    })
    .await?;
    Ok(Json(LicenceList { licences }).into_response())
}

async fn get_licence(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let (mut uses, computers) = st
        .run(&person, move |ops, _| {
            let l = crate::ops::licences::find(ops, &id)?;
            Ok(crate::query::licences::usage(
                ops.store.as_ref(),
                std::slice::from_ref(&l),
                chrono::Utc::now(),
                Some(&l.id),
            )?)
        })
        .await?;
    let usage = uses.pop().ok_or_else(|| {
        ApiProblem::new(StatusCode::INTERNAL_SERVER_ERROR, "no usage computed", None)
    })?;
    Ok(Json(LicenceDetail { usage, computers }).into_response())
}

async fn create_licence(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: LicenceRequest = read_json(body).await?;
    let l = st
        .run(&person, move |ops, actor| {
            crate::ops::licences::create(ops, actor, req)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(l)).into_response())
}

async fn update_licence(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let req: LicenceRequest = read_json(body).await?;
    let l = st
        .run(&person, move |ops, actor| {
            crate::ops::licences::update(ops, actor, &id, req)
        })
        .await?;
    Ok(Json(l).into_response())
}

async fn delete_licence(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    st.run(&person, move |ops, actor| {
        crate::ops::licences::delete(ops, actor, &id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_record(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let record: NewRecord = read_json(body).await?;
    let view = st
        .run(&person, move |ops, actor| {
            op::create_record(ops, actor, &record)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// How a register file is imported.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ImportParams {
    /// Check only, write nothing (default true: an apply must say `dry_run=false`).
    dry_run: Option<bool>,
    /// On apply, write the rows without problems even when others have some (default
    /// false: any problem refuses the whole file).
    skip_problem_rows: Option<bool>,
    /// The file's name, for the audit log and the provenance of what it sets.
    #[param(max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f]*$")]
    file_name: Option<String>,
}

/// Longest `file_name` an import accepts.
pub const MAX_FILE_NAME_CHARS: usize = 255;

async fn import(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let p: ImportParams = query_params(q)?;
    let file_name = p.file_name.unwrap_or_else(|| "register.csv".into());
    if file_name.chars().count() > MAX_FILE_NAME_CHARS || file_name.chars().any(char::is_control) {
        return Err(ApiProblem::new(
            StatusCode::BAD_REQUEST,
            format!("file_name: at most {MAX_FILE_NAME_CHARS} characters, no control characters"),
            Some("file_name".into()),
        ));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        if !is_csv_media_type(ct) {
            return Err(ApiProblem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type {} is not CSV; send the file as text/csv",
                    String::from_utf8_lossy(ct.as_bytes())
                ),
                Some("content-type".into()),
            ));
        }
    }
    let too_large = || {
        ApiProblem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the register file is larger than {} MiB; split it into several files",
                MAX_IMPORT_BYTES / (1024 * 1024)
            ),
            Some("body".into()),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_IMPORT_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = http_body_util::Limited::new(body, MAX_IMPORT_BYTES)
        .collect()
        .await
        .map_err(|_| too_large())?
        .to_bytes();
    let mode = ImportMode {
        dry_run: p.dry_run.unwrap_or(true),
        skip_problem_rows: p.skip_problem_rows.unwrap_or(false),
    };
    let ops = st.ops();
    let actor = crate::ops::Actor::from(&person);
    let outcome = tokio::task::spawn_blocking(move || {
        register_csv::import(&ops, &actor, &file_name, &bytes, mode)
    })
    .await
    .map_err(|e| ApiProblem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None))?;
    match outcome {
        Ok(report) => Ok(Json(report).into_response()),
        Err(Ok(file)) => Err(ApiProblem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            if file.message.starts_with("line ") {
                file.message
            } else {
                format!("line {}: {}", file.line, file.message)
            },
            Some("body".into()),
        )),
        Err(Err(e)) => Err(e.into()),
    }
}

/// `text/csv` (or `application/csv`, `text/plain`), with any parameters.
fn is_csv_media_type(value: &HeaderValue) -> bool {
    crate::http::media_type_essence(value).is_some_and(|essence| {
        matches!(
            essence.as_str(),
            "text/csv" | "application/csv" | "text/plain"
        )
    })
}

/// Which computers' register to export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    /// Only computers matching this filter (the query language of `/api/v1/cis`).
    filter: Option<String>,
}

async fn export(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: ExportParams = query_params(q)?;
    export_csv(&st, &person, p.filter.as_deref()).await
}

/// The register as CSV (the API's export and the web UI's), computers matching `filter`.
pub async fn export_csv(st: &AppState, person: &Person, filter: Option<&str>) -> Reply {
    let settings = st.run(person, |ops, _| op::settings(ops)).await?;
    let filter =
        crate::query::filter::parse_for(CiClass::Computer, filter.unwrap_or("")).map_err(|e| {
            ApiProblem::new(
                StatusCode::BAD_REQUEST,
                e.to_string(),
                Some("filter".into()),
            )
        })?;
    let query = crate::query::Query {
        class: CiClass::Computer,
        filter,
        sort: crate::query::Sort::parse("name")
            .map_err(|e| ApiProblem::new(StatusCode::INTERNAL_SERVER_ERROR, e, None))?,
        limit: 1,
        after: None,
    };
    let mut columns: Vec<(String, String)> = [
        ("ci_id", "id"),
        ("hostname", "os.hostname"),
        ("serial", "system.serial"),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p.to_string()))
    .collect();
    columns.extend(
        settings
            .fields(CiClass::Computer)
            .iter()
            .map(|f| (f.name.to_string(), register::attribute(&f.name))),
    );
    Ok(crate::query_api::csv_export(
        st.store.clone(),
        query,
        columns,
        "census-register.csv",
    ))
}

type Reply = Result<Response, ApiProblem>;

/// Every register field of a computer (built in, then custom), with its type and limits.
#[derive(Debug, Serialize, ToSchema)]
struct RegisterFields {
    fields: Vec<FieldDef>,
    /// The classes that have a register.
    classes: Vec<CiClass>,
}

async fn fields(State(st): State<Arc<AppState>>, Extension(person): Extension<Person>) -> Reply {
    let settings = st.run(&person, |ops, _| op::settings(ops)).await?;
    Ok(Json(RegisterFields {
        fields: settings.fields(CiClass::Computer),
        classes: register::CLASSES.to_vec(),
    })
    .into_response())
}

async fn get_settings(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
) -> Reply {
    let s = st.run(&person, |ops, _| op::settings(ops)).await?;
    Ok(Json(s).into_response())
}

/// The register settings to save (who saved them and when are recorded by the server).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsRequest {
    #[schema(min_items = 1, max_items = 64)]
    statuses: Vec<StatusLabel>,
    #[schema(min_items = 1, max_items = 4)]
    default_precedence: Vec<SourceRank>,
    #[serde(default)]
    #[schema(max_items = 256)]
    precedence: Vec<register::FieldPrecedence>,
    /// Fields added to a class's register (at most 64 per class). Removing one hides it;
    /// the values computers hold stay in their history.
    #[serde(default)]
    #[schema(max_items = 64)]
    custom_fields: Vec<register::CustomField>,
}

async fn put_settings(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    body: Body,
) -> Reply {
    let req: SettingsRequest = read_json(body).await?;
    let next = RegisterSettings {
        statuses: req.statuses,
        default_precedence: req.default_precedence,
        precedence: req.precedence,
        custom_fields: req.custom_fields,
        ..RegisterSettings::default()
    };
    let saved = st
        .run(&person, move |ops, actor| {
            op::put_settings(ops, actor, next)
        })
        .await?;
    Ok(Json(saved).into_response())
}

async fn get_register(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
) -> Reply {
    let view = st.run(&person, move |ops, _| op::get(ops, &id)).await?;
    Ok(Json(view).into_response())
}

async fn edit_register(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path(id): Path<String>,
    body: Body,
) -> Reply {
    let edit: RegisterEdit = read_json(body).await?;
    let view = st
        .run(&person, move |ops, actor| {
            op::edit(ops, actor, &id, &edit, register::Source::Person)
        })
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ReconciliationParams {
    /// List the items people decided to keep too (default false: open items only).
    include_kept: Option<bool>,
}

async fn reconciliation(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    RawQuery(q): RawQuery,
) -> Reply {
    let p: ReconciliationParams = query_params(q)?;
    let include_kept = p.include_kept.unwrap_or(false);
    let list = st
        .run(&person, move |ops, _| op::reconciliation(ops, include_kept))
        .await?;
    Ok(Json(list).into_response())
}

async fn resolve(
    State(st): State<Arc<AppState>>,
    Extension(person): Extension<Person>,
    Path((id, field)): Path<(String, String)>,
    body: Body,
) -> Reply {
    let request: ResolveRequest = read_json(body).await?;
    let view = st
        .run(&person, move |ops, actor| {
            op::resolve(ops, actor, &id, &field, &request)
        })
        .await?;
    Ok(Json(view).into_response())
}
