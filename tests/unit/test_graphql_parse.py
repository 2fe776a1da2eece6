from chaos_runner.workload.graphql import parse_response


def test_http_200_with_errors_is_not_ok_and_keeps_messages():
    resp = parse_response(200, '{"data": {"x": null}, "errors": [{"message": "boom"}]}')
    assert not resp.ok
    assert resp.errors == ["boom"]
    assert resp.data == {"x": None}


def test_401_detail_becomes_an_error():
    resp = parse_response(401, '{"detail": "Authentication required"}')
    assert resp.errors == ["Authentication required"]
    assert not resp.ok


def test_non_json_5xx_keeps_the_text():
    resp = parse_response(502, "<html>bad gateway</html>")
    assert resp.body is None
    assert resp.errors == ["<html>bad gateway</html>"]


def test_plain_success():
    resp = parse_response(200, '{"data": {"posts": []}}')
    assert resp.ok and resp.data == {"posts": []}
