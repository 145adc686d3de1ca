//! Who may call the API: the authorization the HTTP API is deployed with (`API_AUTH`, set by
//! the template from its `ApiAuth` parameter), checked again in the handler.
//!
//! API Gateway refuses unsigned requests (IAM) and invalid tokens (JWT) before the function
//! runs. The handler checks once more, so that a route added without an authorizer, a test
//! stage, or a direct invocation of the function does not serve anyone who asks: in `IAM` or
//! `JWT` mode an event without the authorizer's identity is answered 401 (403 when it carries
//! the identity of the other kind) before routing, parsing or invoking the model. The caller
//! (an IAM principal's ARN or a token's subject, never the token) goes into the request's log
//! line. The OpenAPI document names the security scheme of the mode ([`document`]).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

use crate::config::ConfigError;
use crate::error::{error_builder, json_response};
use crate::schema::ErrorResponse;

/// The environment variable holding the mode.
pub const API_AUTH_VAR: &str = "API_AUTH";

/// How the API authorizes its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiAuth {
    /// SigV4-signed requests of principals allowed `execute-api:Invoke`; the event carries
    /// `requestContext.authorizer.iam`.
    Iam,
    /// A bearer token checked by API Gateway's JWT authorizer; the event carries
    /// `requestContext.authorizer.jwt.claims`.
    Jwt,
    /// Anyone. The default when `API_AUTH` is unset: the local emulators (`cargo lambda watch`,
    /// `sam local`) run no authorizer, and the template always sets the variable.
    #[default]
    None,
}

impl ApiAuth {
    /// Every mode, in the order of [`Self::index`].
    pub const ALL: [Self; 3] = [Self::Iam, Self::Jwt, Self::None];

    /// Reads `API_AUTH` through `lookup`: `IAM`, `JWT` or `NONE` (any case); unset is `NONE`.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let Some(value) = lookup(API_AUTH_VAR) else {
            return Ok(Self::None);
        };
        match value.trim().to_ascii_uppercase().as_str() {
            "IAM" => Ok(Self::Iam),
            "JWT" => Ok(Self::Jwt),
            "NONE" => Ok(Self::None),
            _ => Err(ConfigError::Invalid {
                name: API_AUTH_VAR,
                expected: "IAM, JWT or NONE",
                value,
            }),
        }
    }

    /// The mode as the template's `ApiAuth` parameter spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iam => "IAM",
            Self::Jwt => "JWT",
            Self::None => "NONE",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Iam => 0,
            Self::Jwt => 1,
            Self::None => 2,
        }
    }
}

/// Who sent a request, as the API Gateway authorizer established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An IAM principal (its ARN).
    Iam(String),
    /// A JWT's subject (`sub`).
    Jwt(String),
    /// No authorizer identity in the event.
    Anonymous,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Iam(arn) => write!(f, "iam:{arn}"),
            Self::Jwt(subject) => write!(f, "jwt:{subject}"),
            Self::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// The caller named by the event's authorizer context: the IAM principal's ARN, or the JWT's
/// `sub` claim. Anything else in the context (other claims, the access key) is not read.
pub fn caller(request: &Request) -> Caller {
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return Caller::Anonymous;
    };
    let Some(authorizer) = &context.authorizer else {
        return Caller::Anonymous;
    };
    let non_empty = |value: Option<&String>| value.filter(|v| !v.trim().is_empty()).cloned();
    if let Some(arn) = non_empty(
        authorizer
            .iam
            .as_ref()
            .and_then(|iam| iam.user_arn.as_ref()),
    ) {
        return Caller::Iam(arn);
    }
    if let Some(subject) = non_empty(
        authorizer
            .jwt
            .as_ref()
            .and_then(|jwt| jwt.claims.get("sub")),
    ) {
        return Caller::Jwt(subject);
    }
    Caller::Anonymous
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No identity of the kind `mode` requires: 401.
    Unauthenticated(ApiAuth),
    /// The identity of another kind than `mode` requires: 403.
    WrongKind(ApiAuth),
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::WrongKind(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The JSON answer; a 401 names the scheme to use in `WWW-Authenticate`.
    pub fn into_response(self) -> Response<Body> {
        let (detail, mode) = match self {
            Self::Unauthenticated(mode) => ("authentication required", mode),
            Self::WrongKind(mode) => ("this API does not accept this kind of credentials", mode),
        };
        let detail = match mode {
            ApiAuth::Iam => format!("{detail}: sign the request with AWS Signature Version 4"),
            ApiAuth::Jwt => format!("{detail}: send a bearer token"),
            ApiAuth::None => detail.to_owned(),
        };
        let mut response = json_response(error_builder(self.status()), &ErrorResponse { detail });
        let scheme = match (self, mode) {
            (Self::Unauthenticated(_), ApiAuth::Iam) => Some("AWS4-HMAC-SHA256"),
            (Self::Unauthenticated(_), ApiAuth::Jwt) => Some("Bearer"),
            _ => None,
        };
        if let Some(scheme) = scheme {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
        }
        response
    }
}

/// Whether `mode` admits `caller`: in `IAM` mode only an IAM principal, in `JWT` mode only a
/// token's subject, in `NONE` mode anyone.
pub fn authorize(mode: ApiAuth, caller: &Caller) -> Result<(), Refusal> {
    match (mode, caller) {
        (ApiAuth::None, _) | (ApiAuth::Iam, Caller::Iam(_)) | (ApiAuth::Jwt, Caller::Jwt(_)) => {
            Ok(())
        }
        (_, Caller::Anonymous) => Err(Refusal::Unauthenticated(mode)),
        _ => Err(Refusal::WrongKind(mode)),
    }
}

/// Name of the security scheme in the OpenAPI document of `mode`.
fn scheme_name(mode: ApiAuth) -> Option<&'static str> {
    match mode {
        ApiAuth::Iam => Some("sigv4"),
        ApiAuth::Jwt => Some("bearer"),
        ApiAuth::None => None,
    }
}

/// `doc` with the security scheme of `mode`: the scheme, a document-wide `security`
/// requirement, and the 401 and 403 every operation may then answer. `NONE` leaves it as is.
pub fn document(mut doc: Value, mode: ApiAuth) -> Value {
    let Some(name) = scheme_name(mode) else {
        return doc;
    };
    let scheme = match mode {
        ApiAuth::Iam => json!({
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "AWS Signature Version 4 (service `execute-api`), signed with the \
                            credentials of an IAM principal allowed `execute-api:Invoke` on \
                            this API, e.g. `curl --aws-sigv4 \"aws:amz:<region>:execute-api\"`.",
            "x-amazon-apigateway-authtype": "awsSigv4"
        }),
        _ => json!({
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT from the API's issuer, for one of its audiences \
                            (`Authorization: Bearer <token>`)."
        }),
    };
    doc["components"]["securitySchemes"] = json!({ name: scheme });
    doc["components"]["schemas"]["GatewayError"] = json!({
        "type": "object",
        "description": "An answer of API Gateway itself (its authorizer refused the request).",
        "required": ["message"],
        "properties": {"message": {"type": "string"}}
    });
    doc["security"] = json!([{ name: [] }]);
    let refusal = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/ErrorResponse"},
                {"$ref": "#/components/schemas/GatewayError"}
            ]}}}
        })
    };
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
        {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            responses.insert(
                "401".to_owned(),
                refusal("No credentials, or credentials API Gateway did not accept"),
            );
            responses.insert(
                "403".to_owned(),
                refusal("The credentials are valid but may not call this API"),
            );
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(authorizer: Option<Value>) -> Request {
        let mut event: Value =
            serde_json::from_str(include_str!("../../../data/events/health.json")).unwrap();
        match authorizer {
            Some(authorizer) => event["requestContext"]["authorizer"] = authorizer,
            None => {
                event["requestContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("authorizer");
            }
        }
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    #[test]
    fn api_auth_reads_the_three_modes_and_defaults_to_none() {
        let read = |value: Option<&str>| {
            ApiAuth::from_lookup(&|name| {
                assert_eq!(name, API_AUTH_VAR);
                value.map(str::to_owned)
            })
        };
        assert_eq!(read(None), Ok(ApiAuth::None));
        assert_eq!(read(Some("IAM")), Ok(ApiAuth::Iam));
        assert_eq!(read(Some(" jwt ")), Ok(ApiAuth::Jwt));
        assert_eq!(read(Some("NONE")), Ok(ApiAuth::None));
        let err = read(Some("cognito")).unwrap_err();
        assert!(err.to_string().contains("API_AUTH"), "{err}");
        for mode in ApiAuth::ALL {
            assert_eq!(ApiAuth::ALL[mode.index()], mode);
            assert_eq!(read(Some(mode.as_str())), Ok(mode));
        }
    }

    #[test]
    fn the_orchestrator_configuration_carries_the_mode() {
        let config = |auth: Option<&str>| {
            crate::OrchestratorConfig::from_lookup(|name| match name {
                "MODEL_FUNCTION_NAME" => Some("model".to_owned()),
                API_AUTH_VAR => auth.map(str::to_owned),
                _ => None,
            })
        };
        assert_eq!(config(Some("IAM")).unwrap().auth, ApiAuth::Iam);
        assert_eq!(config(None).unwrap().auth, ApiAuth::None);
        assert!(config(Some("open")).is_err());
    }

    #[test]
    fn the_caller_is_the_iam_arn_or_the_jwt_subject_and_nothing_else() {
        let arn = "arn:aws:iam::123456789012:user/forecaster";
        let iam = event(Some(
            json!({"iam": {"userArn": arn, "accessKey": "AKIAEXAMPLE"}}),
        ));
        assert_eq!(caller(&iam), Caller::Iam(arn.to_owned()));
        let jwt = event(Some(
            json!({"jwt": {"claims": {"sub": "user-1", "iss": "https://issuer"}, "scopes": null}}),
        ));
        assert_eq!(caller(&jwt), Caller::Jwt("user-1".to_owned()));
        // Claims without a subject, an empty ARN, no authorizer: nobody to name.
        for authorizer in [
            Some(json!({"jwt": {"claims": {"claim1": "value1"}, "scopes": ["scope1"]}})),
            Some(json!({"iam": {"userArn": ""}})),
            Some(json!({"jwt": {"claims": {"sub": " "}}})),
            None,
        ] {
            assert_eq!(
                caller(&event(authorizer.clone())),
                Caller::Anonymous,
                "{authorizer:?}"
            );
        }
        assert_eq!(
            Caller::Iam(arn.to_owned()).to_string(),
            format!("iam:{arn}")
        );
        assert_eq!(Caller::Jwt("user-1".into()).to_string(), "jwt:user-1");
    }

    #[test]
    fn each_mode_admits_only_its_own_callers() {
        let iam = Caller::Iam("arn:aws:iam::1:role/r".into());
        let jwt = Caller::Jwt("s".into());
        let nobody = Caller::Anonymous;
        assert_eq!(authorize(ApiAuth::Iam, &iam), Ok(()));
        assert_eq!(authorize(ApiAuth::Jwt, &jwt), Ok(()));
        for caller in [&iam, &jwt, &nobody] {
            assert_eq!(authorize(ApiAuth::None, caller), Ok(()));
        }
        assert_eq!(
            authorize(ApiAuth::Iam, &nobody),
            Err(Refusal::Unauthenticated(ApiAuth::Iam))
        );
        assert_eq!(
            authorize(ApiAuth::Jwt, &nobody),
            Err(Refusal::Unauthenticated(ApiAuth::Jwt))
        );
        assert_eq!(
            authorize(ApiAuth::Iam, &jwt),
            Err(Refusal::WrongKind(ApiAuth::Iam))
        );
        assert_eq!(
            authorize(ApiAuth::Jwt, &iam),
            Err(Refusal::WrongKind(ApiAuth::Jwt))
        );
    }

    #[test]
    fn the_document_names_the_scheme_of_its_mode_only() {
        let base = crate::schema::openapi_document();
        assert_eq!(document(base.clone(), ApiAuth::None), base);
        for (mode, name, kind) in [
            (ApiAuth::Iam, "sigv4", "apiKey"),
            (ApiAuth::Jwt, "bearer", "http"),
        ] {
            let doc = document(base.clone(), mode);
            assert_eq!(doc["security"], json!([{ name: [] }]), "{mode:?}");
            let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
            assert_eq!(schemes.keys().collect::<Vec<_>>(), [name]);
            assert_eq!(schemes[name]["type"], kind);
            for (path, item) in doc["paths"].as_object().unwrap() {
                for (method, operation) in item.as_object().unwrap() {
                    for status in ["401", "403"] {
                        assert!(
                            operation["responses"].get(status).is_some(),
                            "{mode:?} {method} {path} lacks {status}"
                        );
                    }
                }
            }
        }
    }
}
