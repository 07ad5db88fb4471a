//! People's authentication: API tokens (random, shown once, stored as a SHA-256 of the
//! secret, with expiry, revocation and last-used) and the role guard every people route
//! calls first.
//!
//! Architecture Invariant: an agent's key never authorizes a person's route and a person's
//! token never authorizes an agent route. People routes read only `Authorization: Bearer`;
//! agent routes read only the signed envelope headers.

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Duration, Utc};

use crate::http::ApiProblem;
use crate::model::{Role, User};
use crate::openapi::Doc;
pub use crate::ops::credentials::new_token;
use crate::ops::credentials::{same_digest, secret_hash, TOKEN_PREFIX};
use crate::store::Store;

/// Who is calling a people route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub role: Role,
    pub token_id: String,
}

impl From<&Person> for crate::ops::Actor {
    fn from(p: &Person) -> Self {
        crate::ops::Actor::new(p.name.clone())
    }
}

fn unauthorized(detail: &str) -> ApiProblem {
    ApiProblem::new(StatusCode::UNAUTHORIZED, detail, None)
}

/// Resolves the bearer token to a person. Blocking (reads the store).
pub fn authenticate(
    store: &dyn Store,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Result<Person, ApiProblem> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "this route needs a person's API token: Authorization: Bearer census_pat.…",
        ));
    };
    let text = value
        .to_str()
        .ok()
        .and_then(bearer_token)
        .ok_or_else(|| unauthorized("Authorization must be 'Bearer <token>'"))?;
    authenticate_token(store, text, now)
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110, 11.1) and may be followed by any run of spaces.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Resolves a token's text (`census_pat.<id>.<secret>`) to a person: the one check behind
/// both the API's bearer tokens and the web UI's session cookie. Blocking.
pub fn authenticate_token(
    store: &dyn Store,
    text: &str,
    now: DateTime<Utc>,
) -> Result<Person, ApiProblem> {
    let mut parts = text.splitn(3, '.');
    let (Some(TOKEN_PREFIX), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized("the bearer token is not a Census API token"));
    };
    let invalid = || unauthorized("the API token is not valid");
    let store_error = |e: crate::store::StoreError| {
        ApiProblem::new(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}"), None)
    };
    let token = store
        .find_api_token(id)
        .map_err(store_error)?
        .ok_or_else(invalid)?;
    if !same_digest(&token.secret_hash, &secret_hash(secret)) {
        return Err(invalid());
    }
    if token.revoked_at.is_some() {
        return Err(unauthorized("the API token was revoked"));
    }
    if token.expires_at <= now {
        return Err(unauthorized("the API token has expired"));
    }
    let user: User = store
        .get_user(&token.user)
        .map_err(store_error)?
        .ok_or_else(invalid)?;
    if user.disabled {
        return Err(unauthorized("this user is disabled"));
    }
    // A token outlives nobody: one issued before its person was (re)created is not theirs.
    if token.created_at < user.created_at {
        return Err(invalid());
    }
    // last_used is a hint for operators, not an audit trail: record it at most once a
    // minute so reads do not turn into writes.
    if token
        .last_used_at
        .is_none_or(|t| now - t > Duration::seconds(60))
    {
        store.touch_api_token(&token.id, now).map_err(store_error)?;
    }
    Ok(Person {
        name: user.name,
        role: user.role,
        token_id: token.id,
    })
}

/// Who may call a people route.
#[derive(Debug, Clone, Copy)]
pub enum Allowed {
    /// Every role.
    AnyPerson,
    Roles(&'static [Role]),
}

impl Allowed {
    pub fn permits(self, role: Role) -> bool {
        match self {
            Allowed::AnyPerson => true,
            Allowed::Roles(roles) => roles.contains(&role),
        }
    }
}

/// What a person presents on a route.
#[derive(Debug, Clone, Copy)]
enum Credential {
    Bearer,
    Session,
}

/// Who may call a route, as registered.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Probes and enrollment (the token is in the body).
    Anonymous,
    /// Signed by an enrolled agent's key (envelope headers).
    Agent,
    People(Allowed),
}

/// One registered route and who may call it: the table the route test walks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteAccess {
    pub method: &'static str,
    pub path: &'static str,
    /// "anonymous", "agent", or the roles allowed.
    pub access: Vec<&'static str>,
    /// What the caller presents: "none", "signature" (agents), "bearer" (API tokens) or
    /// "session" (the web UI's cookie). A route accepts exactly one.
    pub credential: &'static str,
    /// What it takes and answers, for the OpenAPI document.
    #[serde(skip)]
    pub doc: crate::openapi::OpDoc,
}

/// Builds the router and its access table together, so a route cannot be registered
/// without saying who may call it. People's routes get the role check as a layer; their
/// handlers receive the authenticated [`Person`] as an extension.
pub struct RouteTable {
    router: axum::Router<Arc<crate::http::AppState>>,
    /// None only for [`RouteTable::listing`], which never serves.
    guards: Option<Guards>,
    pub entries: Vec<RouteAccess>,
}

/// A route as the router holds it.
pub type Route = axum::routing::MethodRouter<Arc<crate::http::AppState>>;

/// Wraps a web UI route in the session layer (cookie, role, CSRF): given by the web UI
/// when the router is built, so this table need not know the UI.
pub type SessionLayer = fn(Route, Arc<dyn Store>, Allowed) -> Route;

/// What a serving table checks people with.
struct Guards {
    store: Arc<dyn Store>,
    session: SessionLayer,
}

impl RouteTable {
    pub fn new(store: Arc<dyn Store>, session: SessionLayer) -> Self {
        RouteTable {
            router: axum::Router::new(),
            guards: Some(Guards { store, session }),
            entries: Vec::new(),
        }
    }

    /// The table alone, for `census-collector routes` and tests.
    pub fn listing() -> Self {
        RouteTable {
            router: axum::Router::new(),
            guards: None,
            entries: Vec::new(),
        }
    }

    pub fn open(
        &mut self,
        method: &'static str,
        path: &'static str,
        access: Access,
        route: axum::routing::MethodRouter<Arc<crate::http::AppState>>,
    ) -> Doc<'_> {
        let (who, credential) = match access {
            Access::Anonymous => (vec!["anonymous"], "none"),
            Access::Agent => (vec!["agent"], "signature"),
            Access::People(_) => (unreachable_people(), "misregistered"),
        };
        self.entries.push(RouteAccess {
            method,
            path,
            access: who,
            credential,
            doc: Default::default(),
        });
        self.router = std::mem::take(&mut self.router).route(path, route);
        self.last_doc()
    }

    fn last_doc(&mut self) -> Doc<'_> {
        let entry = self.entries.len() - 1;
        Doc(&mut self.entries[entry].doc)
    }

    /// A route for people with an API token (`Authorization: Bearer`).
    pub fn people(
        &mut self,
        method: &'static str,
        path: &'static str,
        allowed: Allowed,
        route: axum::routing::MethodRouter<Arc<crate::http::AppState>>,
    ) -> Doc<'_> {
        self.person_route(method, path, allowed, route, Credential::Bearer);
        self.last_doc()
    }

    /// A web UI page or form: the session cookie, the role check and (for POST) the CSRF
    /// check come as the table's [`SessionLayer`].
    pub fn ui(
        &mut self,
        method: &'static str,
        path: &'static str,
        allowed: Allowed,
        route: axum::routing::MethodRouter<Arc<crate::http::AppState>>,
    ) {
        self.person_route(method, path, allowed, route, Credential::Session);
    }

    fn person_route(
        &mut self,
        method: &'static str,
        path: &'static str,
        allowed: Allowed,
        route: axum::routing::MethodRouter<Arc<crate::http::AppState>>,
        credential: Credential,
    ) {
        let roles = Role::ALL
            .into_iter()
            .filter(|r| allowed.permits(*r))
            .map(Role::as_str)
            .collect();
        self.entries.push(RouteAccess {
            method,
            path,
            access: roles,
            credential: match credential {
                Credential::Bearer => "bearer",
                Credential::Session => "session",
            },
            doc: Default::default(),
        });
        let route = match (&self.guards, credential) {
            (Some(g), Credential::Bearer) => route.route_layer(
                axum::middleware::from_fn_with_state((g.store.clone(), allowed), require),
            ),
            (Some(g), Credential::Session) => (g.session)(route, g.store.clone(), allowed),
            (None, _) => route,
        };
        self.router = std::mem::take(&mut self.router).route(path, route);
    }

    pub fn into_router(self) -> axum::Router<Arc<crate::http::AppState>> {
        self.router
    }
}

fn unreachable_people() -> Vec<&'static str> {
    // `open` is for anonymous and agent routes; people's routes go through `people` or `ui`.
    vec!["misregistered"]
}

async fn require(
    axum::extract::State((store, allowed)): axum::extract::State<(Arc<dyn Store>, Allowed)>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match guard(&store, req.headers(), allowed).await {
        Ok(person) => {
            req.extensions_mut().insert(person);
            next.run(req).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// Authenticates and checks the role: 401 without a valid token, 403 with the wrong role.
pub async fn guard(
    store: &Arc<dyn Store>,
    headers: &HeaderMap,
    allowed: Allowed,
) -> Result<Person, ApiProblem> {
    let store = store.clone();
    let headers = headers.clone();
    let person =
        tokio::task::spawn_blocking(move || authenticate(store.as_ref(), &headers, Utc::now()))
            .await
            .map_err(|e| {
                ApiProblem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None)
            })??;
    if !allowed.permits(person.role) {
        return Err(forbidden(&person, allowed));
    }
    Ok(person)
}

/// The 403 for a person whose role is not among `allowed`.
pub fn forbidden(person: &Person, allowed: Allowed) -> ApiProblem {
    let need = match allowed {
        Allowed::Roles(r) => r
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or "),
        Allowed::AnyPerson => "any role".into(),
    };
    ApiProblem::new(
        StatusCode::FORBIDDEN,
        format!(
            "role {} may not do this; it needs {need}",
            person.role.as_str()
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_scheme_is_case_insensitive() {
        for v in ["Bearer t", "bearer t", "BEARER t", "BeArEr   t "] {
            assert_eq!(bearer_token(v), Some("t"), "{v}");
        }
        for v in ["Basic t", "Bearer", "Bearer ", "Bearert", "t"] {
            assert_eq!(bearer_token(v), None, "{v}");
        }
    }

    #[test]
    fn digests_compare_in_constant_shape() {
        assert!(same_digest("abcd", "abcd"));
        assert!(!same_digest("abcd", "abce"));
        assert!(!same_digest("abcd", "abc"));
    }

    #[test]
    fn token_text_carries_id_and_secret_but_store_keeps_only_the_hash() {
        let (t, text) = new_token("ann", Duration::days(1), Utc::now());
        assert!(text.starts_with("census_pat.pat_"));
        let secret = text.rsplit('.').next().unwrap();
        assert_eq!(t.secret_hash, secret_hash(secret));
        assert!(!serde_json::to_string(&t).unwrap().contains(secret));
    }
}
