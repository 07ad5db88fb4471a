//! People's routes for the asset register: its fields, its settings, and a CI's register
//! (read, and edited by asset managers and administrators). HTTP only: each write is an
//! operation of [`crate::ops::register`], shared with the web UI and the CLI.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::{read_json, ApiProblem, AppState};
use crate::model::register::{self, FieldDef, RegisterSettings, SourceRank, StatusLabel};
use crate::model::*;
use crate::ops::register::{self as op, RegisterEdit, RegisterView};
use crate::people::{Allowed, Person, RouteTable};

const READERS: Allowed = Allowed::AnyPerson;
/// Who edits the register: people whose job it is, and administrators.
pub const REGISTER_EDITORS: Allowed = Allowed::Roles(&[Role::AssetManager, Role::Admin]);
const ADMINS: Allowed = Allowed::Roles(&[Role::Admin]);

pub fn routes(table: &mut RouteTable) {
    use axum::routing::{patch, put};
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
}

type Reply = Result<Response, ApiProblem>;

/// Every register field, with its type and limits.
#[derive(Debug, Serialize, ToSchema)]
struct RegisterFields {
    fields: Vec<FieldDef>,
    /// The classes that have a register.
    classes: Vec<CiClass>,
}

async fn fields(Extension(_person): Extension<Person>) -> Reply {
    Ok(Json(RegisterFields {
        fields: register::FIELDS.to_vec(),
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
