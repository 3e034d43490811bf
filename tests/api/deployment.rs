//! The deployment files under `deploy/` agree with the service: the Kubernetes ConfigMap's
//! configuration loads, the probes name endpoints that answer, the container port is the one
//! the configuration binds, and the image runs as a non-root user. (`.ci/run` also validates
//! the manifests against the Kubernetes schemas with kubernetes-validate.)

use cramp_cds::config::Settings;

use crate::helpers::spawn_app;

fn deploy_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/deploy/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// The block scalar `cramp-cds.toml: |` of the ConfigMap, unindented.
fn configmap_toml() -> String {
    let yaml = deploy_file("kubernetes/configmap.yaml");
    let start = yaml
        .find("cramp-cds.toml: |\n")
        .expect("the ConfigMap holds cramp-cds.toml")
        + "cramp-cds.toml: |\n".len();
    yaml[start..]
        .lines()
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_configmaps_configuration_loads_and_binds_the_container_port() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cramp-cds.toml");
    std::fs::write(&file, configmap_toml()).unwrap();
    let settings = Settings::load(Some(&file)).unwrap_or_else(|e| panic!("{e}"));
    let port = settings.server.bind.rsplit(':').next().unwrap().to_owned();
    let deployment = deploy_file("kubernetes/deployment.yaml");
    assert!(
        deployment.contains(&format!("containerPort: {port}")),
        "the container port is the bound port {port}"
    );
    let ca = settings
        .store
        .ca_file
        .expect("the ConfigMap names the database CA");
    assert!(
        deployment.contains(&format!("mountPath: {}", ca.parent().unwrap().display())),
        "the CA file {} is mounted",
        ca.display()
    );
    assert!(!settings.store.create_if_missing);
}

#[actix_web::test]
async fn the_probes_name_endpoints_that_answer() {
    let deployment = deploy_file("kubernetes/deployment.yaml");
    let app = spawn_app().await;
    for probe in ["readinessProbe", "livenessProbe"] {
        let at = deployment
            .find(probe)
            .unwrap_or_else(|| panic!("no {probe}"));
        let path = deployment[at..]
            .lines()
            .find_map(|l| l.trim().strip_prefix("path: "))
            .unwrap();
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 200, "{probe} {path}: {body}");
    }
}

#[test]
fn the_image_is_multi_stage_and_runs_as_a_non_root_user() {
    let dockerfile = deploy_file("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a build stage and a runtime stage");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(!user.starts_with('0') && user != "root", "USER {user}");
    assert!(dockerfile.contains("--locked"), "built from Cargo.lock");
}
