async def test_company_page_for_provider_admin(world, gql):
    token = world.token("Provider", "Service Provider Global Administrator")
    body = await gql(
        "{ companies(first: 10) { totalCount nodes { name reseller { name } locations { name } owner { email } } } }",
        token=token,
    )
    assert "errors" not in body, body
    names = [n["name"] for n in body["data"]["companies"]["nodes"]]
    assert names == ["A1", "A2", "B1", "P1"]
