//! The API's routes, in one table. The router matches requests against it, the OpenAPI
//! document ([`crate::schema`]) describes exactly its rows, and the handler tests drive
//! every row and every documented operation, so a route cannot be served undocumented or
//! documented unserved.

use lambda_http::http::Method;

/// What answers a route: one handler each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// One store, one item, one day.
    Predict,
    /// Many `(date, store, item)` in one call.
    Batch,
    /// A daily series for one store-item.
    Forecast,
    /// A ping of the model.
    Health,
    /// The OpenAPI document.
    OpenApi,
}

/// One route: its path, the one method it answers, and what answers it.
#[derive(Debug)]
pub struct Route {
    /// The path, as API Gateway and the OpenAPI document declare it.
    pub path: &'static str,
    /// The one method the route answers (any other is a 405 naming this one).
    pub method: Method,
    /// The handler.
    pub handler: Handler,
}

/// Every route of the API.
pub static ROUTES: [Route; 5] = [
    Route::new(Method::POST, "/v1/api/predict", Handler::Predict),
    Route::new(Method::POST, "/v1/api/predict/batch", Handler::Batch),
    Route::new(Method::GET, "/v1/api/forecast", Handler::Forecast),
    Route::new(Method::GET, "/v1/api/health", Handler::Health),
    Route::new(Method::GET, "/v1/api/openapi.json", Handler::OpenApi),
];

impl Route {
    const fn new(method: Method, path: &'static str, handler: Handler) -> Self {
        Self {
            path,
            method,
            handler,
        }
    }

    /// The route at `path`, whatever the method.
    pub fn find(path: &str) -> Option<&'static Self> {
        ROUTES.iter().find(|route| route.path == path)
    }
}
