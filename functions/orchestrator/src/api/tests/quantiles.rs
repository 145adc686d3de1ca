//! Quantiles and the SMAPE point through the API: asked for by body field or query
//! parameter, passed to the model as `params`, answered beside `sales`; without them every
//! answer and every model payload is what it was before.

use super::*;

fn predict_body(extra: &str) -> String {
    format!(r#"{{"date":"2018-01-01","store":1,"item":7{extra}}}"#)
}

#[tokio::test]
async fn given_quantiles_when_predicting_then_they_are_answered_beside_sales_by_level() {
    let (status, body, app) = call(
        FakeModel::scoring(),
        post_predict(&predict_body(r#","quantiles":[0.9,0.1,0.5]"#)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sales = body["sales"].as_f64().unwrap();
    assert_eq!(
        body,
        json!({"sales": sales, "quantiles": {
            "p10": quantile(sales, 0.1), "p50": quantile(sales, 0.5), "p90": quantile(sales, 0.9)
        }})
    );
    // Keys in level order, not sorted as strings.
    let text = serde_json::to_string(&body["quantiles"]).unwrap();
    assert!(text.find("p10") < text.find("p50") && text.find("p50") < text.find("p90"));
    let sent = app.model.client.predictions_sent();
    let asked = PredictOptions {
        point: None,
        quantiles: Some(vec![0.1, 0.5, 0.9]),
    };
    assert_eq!(sent[0].params, asked);
}

#[tokio::test]
async fn without_quantiles_the_answer_and_the_model_payload_are_unchanged_byte_for_byte() {
    let app = Orchestrator::new(FakeModel::scoring(), Limits::default());
    let response = app.handle(post_predict(&predict_body(""))).await;
    let text = std::str::from_utf8(response.body().as_ref())
        .unwrap()
        .to_owned();
    let sales = score(&[1.0, 7.0, 1.0, 0.0, 2018.0]);
    assert_eq!(
        text,
        format!(r#"{{"sales":{}}}"#, serde_json::to_string(&sales).unwrap())
    );
    let sent = serde_json::to_value(&app.model.client.predictions_sent()[0]).unwrap();
    assert_eq!(
        sent.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["dataframe_split"]
    );
    // `quantiles: null` and `false` ask for nothing either.
    for extra in [r#","quantiles":null"#, r#","quantiles":false"#] {
        let response = app.handle(post_predict(&predict_body(extra))).await;
        assert_eq!(std::str::from_utf8(response.body().as_ref()).unwrap(), text);
    }
}

#[tokio::test]
async fn a_batch_with_quantiles_answers_each_instance_in_order() {
    let body = json!({
        "instances": [
            {"date": "2018-01-01", "store": 1, "item": 1},
            {"date": "2018-01-02", "store": 2, "item": 3}
        ],
        "quantiles": true
    });
    let (status, body, _) = call(
        FakeModel::scoring(),
        post("/v1/api/predict/batch", &body.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for prediction in body["predictions"].as_array().unwrap() {
        let sales = prediction["sales"].as_f64().unwrap();
        assert_eq!(
            prediction["quantiles"],
            json!({"p10": quantile(sales, 0.1), "p50": quantile(sales, 0.5), "p90": quantile(sales, 0.9)})
        );
    }
}

#[tokio::test]
async fn a_chunked_batch_reassembles_the_quantile_columns_in_order() {
    let instances: Vec<Value> = (0..25u32)
        .map(|i| json!({"date": "2018-01-01", "store": 1 + i % 10, "item": 1 + i}))
        .collect();
    let limits = Limits {
        chunk_rows: 4,
        ..Limits::default()
    };
    let app = Orchestrator::new(FakeModel::scoring(), limits);
    let body = json!({"instances": instances, "quantiles": [0.25]}).to_string();
    let reply = answer(&app, post("/v1/api/predict/batch", &body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(app.model.client.predictions_sent().len() >= 7);
    for prediction in reply.body["predictions"].as_array().unwrap() {
        let sales = prediction["sales"].as_f64().unwrap();
        assert_eq!(
            prediction["quantiles"],
            json!({"p25": quantile(sales, 0.25)})
        );
    }
}

#[tokio::test]
async fn a_forecast_takes_quantiles_and_the_point_from_the_query() {
    let (status, body, app) = call(
        FakeModel::scoring(),
        get(
            "/v1/api/forecast?store=1&item=1&start=2018-01-01&days=2&quantiles=0.1,0.9&point=smape",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for day in body["forecast"].as_array().unwrap() {
        let sales = day["sales"].as_f64().unwrap();
        assert_eq!(
            day["quantiles"],
            json!({"p10": quantile(sales, 0.1), "p90": quantile(sales, 0.9)})
        );
    }
    let asked = PredictOptions {
        point: Some(PointKind::Smape),
        quantiles: Some(vec![0.1, 0.9]),
    };
    assert_eq!(app.model.client.predictions_sent()[0].params, asked);
}

#[tokio::test]
async fn bad_levels_are_422_at_the_field_and_never_reach_the_model() {
    let too_many: Vec<f64> = (1..=20).map(|i| f64::from(i) / 21.0).collect();
    for (request, expected) in [
        (
            post_predict(&predict_body(r#","quantiles":[0.5,1.0]"#)),
            "body.quantiles:quantile_level",
        ),
        (
            post_predict(&predict_body(r#","quantiles":[0]"#)),
            "body.quantiles:quantile_level",
        ),
        (
            post_predict(&predict_body(&format!(
                r#","quantiles":{}"#,
                json!(too_many)
            ))),
            "body.quantiles:too_long",
        ),
        (
            post_predict(&predict_body(r#","point":"median""#)),
            "body.point:enum",
        ),
        (
            post(
                "/v1/api/predict/batch",
                r#"{"instances":[{"date":"2018-01-01","store":1,"item":1}],"quantiles":[-0.1]}"#,
            ),
            "body.quantiles:quantile_level",
        ),
        (
            get("/v1/api/forecast?store=1&item=1&start=2018-01-01&days=2&quantiles=0.5,1.5"),
            "query.quantiles:quantile_level",
        ),
    ] {
        let (status, body, app) = call(FakeModel::scoring(), request).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(error_locs(&body), [expected]);
        assert!(app.model.client.predictions_sent().is_empty());
    }
}

#[tokio::test]
async fn field_and_level_errors_are_reported_together() {
    let (status, body, _) = call(
        FakeModel::scoring(),
        post_predict(r#"{"date":"2018-01-01","store":0,"item":1,"quantiles":[2]}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        error_locs(&body),
        [
            "body.store:greater_than_equal",
            "body.quantiles:quantile_level"
        ]
    );
}

#[tokio::test]
async fn a_model_without_a_distribution_is_a_clear_422_not_a_502() {
    let no_distribution = || {
        FakeModel::failing(ModelCallError::FunctionError {
            error_type: FunctionErrorType::Model(ModelErrorType::NoDistribution),
            message: "model demand/v1 has no predictive distribution".into(),
        })
    };
    for (request, expected) in [
        (
            post_predict(&predict_body(r#","quantiles":true"#)),
            "body.quantiles:no_distribution",
        ),
        (
            post_predict(&predict_body(r#","point":"smape""#)),
            "body.point:no_distribution",
        ),
        (
            get("/v1/api/forecast?store=1&item=1&start=2018-01-01&days=2&quantiles=true"),
            "query.quantiles:no_distribution",
        ),
    ] {
        let (status, body, _) = call(no_distribution(), request).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(error_locs(&body), [expected]);
        assert!(
            body["detail"][0]["msg"]
                .as_str()
                .unwrap()
                .contains("no predictive distribution")
        );
    }
}

#[tokio::test]
async fn quantiles_that_do_not_match_the_request_are_a_502() {
    let model = FakeModel::answering(&[12.5]);
    let (status, _, _) = call(model, post_predict(&predict_body(r#","quantiles":true"#))).await;
    assert_eq!(status, 502);
}
