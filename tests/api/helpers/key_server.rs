//! A JWK Set server on loopback whose answers a test can change while it runs, and the
//! public JWKs of the test keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::tokens::key_file;

/// What the key server answers with.
#[derive(Clone)]
pub struct Reply {
    pub body: Vec<u8>,
    pub cache_control: Option<&'static str>,
    /// Sent in chunks with no `Content-Length`.
    pub streamed: bool,
    /// Answered 503 instead.
    pub down: bool,
}

impl Reply {
    pub fn set(keys: &[Value]) -> Reply {
        Reply {
            body: json!({ "keys": keys }).to_string().into_bytes(),
            cache_control: None,
            streamed: false,
            down: false,
        }
    }

    /// The test JWK Set file, `tests/keys/jwks.json`.
    pub fn test_keys() -> Reply {
        Reply {
            body: key_file("jwks.json"),
            ..Reply::set(&[])
        }
    }

    pub fn down() -> Reply {
        Reply {
            down: true,
            ..Reply::set(&[])
        }
    }

    pub fn cached_for(self, cache_control: &'static str) -> Reply {
        Reply {
            cache_control: Some(cache_control),
            ..self
        }
    }

    /// The same set, made `total` bytes long with JSON whitespace and streamed.
    pub fn padded_and_streamed(keys: &[Value], total: usize) -> Reply {
        let set = json!({ "keys": keys }).to_string();
        let mut body = set[..set.len() - 1].to_owned();
        body.push_str(&" ".repeat(total.saturating_sub(set.len())));
        body.push('}');
        Reply {
            body: body.into_bytes(),
            cache_control: None,
            streamed: true,
            down: false,
        }
    }

    fn respond(self) -> HttpResponse {
        if self.down {
            return HttpResponse::ServiceUnavailable().finish();
        }
        let mut response = HttpResponse::Ok();
        response.content_type("application/json");
        if let Some(cache_control) = self.cache_control {
            response.insert_header(("Cache-Control", cache_control));
        }
        if self.streamed {
            let chunks: Vec<Result<web::Bytes, std::io::Error>> = self
                .body
                .chunks(16 * 1024)
                .map(|chunk| Ok(web::Bytes::copy_from_slice(chunk)))
                .collect();
            response.streaming(futures::stream::iter(chunks))
        } else {
            response.body(self.body)
        }
    }
}

#[derive(Default)]
struct Replies {
    /// The answer at every path without one of its own.
    everywhere: Option<Reply>,
    at: HashMap<String, Reply>,
}

/// A JWK Set server that records the paths it was asked for.
pub struct KeyServer {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The set's usual URL, `{base_url}/jwks.json`.
    pub url: String,
    replies: Arc<Mutex<Replies>>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl KeyServer {
    /// Answers `first` at every path.
    pub async fn start(first: Reply) -> KeyServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let replies = Arc::new(Mutex::new(Replies {
            everywhere: Some(first),
            at: HashMap::new(),
        }));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (served, recorded) = (replies.clone(), paths.clone());
        let server = HttpServer::new(move || {
            let (served, recorded) = (served.clone(), recorded.clone());
            App::new().default_service(web::to(move |request: HttpRequest| {
                    let path = request.path().to_owned();
                    recorded.lock().unwrap().push(path.clone());
                    let replies = served.lock().unwrap();
                    let reply = replies
                        .at
                        .get(&path)
                        .or(replies.everywhere.as_ref())
                        .cloned();
                    async move {
                        reply.map_or_else(|| HttpResponse::NotFound().finish(), Reply::respond)
                    }
                }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        KeyServer {
            url: format!("{base_url}/jwks.json"),
            base_url,
            replies,
            paths,
        }
    }

    /// Answers `reply` from now on, at every path without an answer of its own.
    pub fn serve(&self, reply: Reply) {
        self.replies.lock().unwrap().everywhere = Some(reply);
    }

    /// Answers `reply` at `path` from now on.
    pub fn serve_at(&self, path: &str, reply: Reply) {
        self.replies
            .lock()
            .unwrap()
            .at
            .insert(path.to_owned(), reply);
    }

    /// The body served at every path.
    pub fn body_everywhere(&self) -> Vec<u8> {
        let replies = self.replies.lock().unwrap();
        replies
            .everywhere
            .as_ref()
            .map(|r| r.body.clone())
            .unwrap_or_default()
    }

    /// How many requests it answered.
    pub fn hits(&self) -> usize {
        self.paths.lock().unwrap().len()
    }

    /// The paths it was asked for, in order.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// The public JWK of a test key (`tests/keys/`), under `kid`.
pub fn public_jwk(private_pem: &str, kid: &str) -> Value {
    let key = EncodingKey::from_ec_pem(&key_file(private_pem)).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES384).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}
