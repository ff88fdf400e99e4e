from fastapi.testclient import TestClient


def test_liveness_answers_on_both_paths(client: TestClient) -> None:
    for path in ("/health", "/api/health"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "healthy"}


def test_readiness_names_every_component(client: TestClient) -> None:
    response = client.get("/api/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "components": {"database": "ok", "storage": "ok", "queue": "ok", "cache": "ok"},
    }


def test_readiness_is_503_and_names_the_database_when_it_is_down(
    client: TestClient, configure
) -> None:
    configure(ANB_DATABASE_URL="postgresql+pg8000://nobody@127.0.0.1:1/none")
    response = client.get("/api/health/ready")
    assert response.status_code == 503
    assert response.json()["components"]["database"] == "down"
    assert response.json()["components"]["storage"] == "ok"


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/videos/upload" in spec["paths"]
    upload = spec["paths"]["/api/videos/upload"]["post"]
    assert "video_file" in str(upload["requestBody"])
    responses = [op["responses"] for path in spec["paths"].values() for op in path.values()]
    assert all("422" not in codes for codes in responses)  # validation answers 400
    assert "400" in spec["paths"]["/api/public/rankings"]["get"]["responses"]
    assert client.get("/docs").status_code == 200


def test_unknown_path_is_404_json(client: TestClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert "detail" in response.json()
