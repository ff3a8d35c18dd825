// What a server must not give away, and what it must not let a web page do. No paths of the machine it runs
// on (the model file's, the training data's, any in an error's words): a client learns names of files, never
// where they lie. No request a browser sends from another site without asking (a CORS "simple" request),
// and none that names the server by a name it does not answer to (DNS rebinding: a page whose name its
// owner points at 127.0.0.1 reaches a loopback server, with the page's name in Host). With an API key, no
// answer but the health probes' to a request without it.
using System.Net;
using System.Text.Json.Nodes;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class SafetyTests(ServerFixture server)
{
    [Fact]
    public async Task The_model_description_names_files_without_their_folders()
    {
        var provenance = server.Model.Provenance! with
        {
            Data = [new DataFile("/srv/private/catalogue/songs-2026.csv", "00", 10), new DataFile(@"C:\Users\someone\charts.csv", "00", 5)],
        };
        await using var served = await server.StartAsync(server.Model with { Provenance = provenance },
            new ServeOptions { Name = "hits", ModelFile = "/srv/private/models/hits.hitgpu", Port = 0 });
        using var client = ServerFixture.ClientOf(served);
        var (status, body, _) = await Get(client, "/model");
        Assert.Equal(HttpStatusCode.OK, status);
        var model = JsonNode.Parse(body)!;
        Assert.Equal("hits.hitgpu", model["file"]!.GetValue<string>());
        Assert.Equal(["songs-2026.csv", "charts.csv"], model["training"]!["data"]!.AsArray().Select(d => d!["source"]!.GetValue<string>()));
        Assert.DoesNotContain("private", body);
        Assert.DoesNotContain("someone", body);
    }

    [Fact]
    public void An_internal_failure_is_answered_without_its_message_which_may_name_a_path()
    {
        var (status, message) = server.Server.Endpoints.Refusal(new FileNotFoundException("Could not find file '/srv/private/kernels/cache.bin'."))!.Value;
        Assert.Equal(500, status);
        Assert.DoesNotContain("/srv", message);
        Assert.StartsWith("internal error: FileNotFoundException", message);
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData("multipart/form-data; boundary=x")]
    public async Task Predict_refuses_the_types_a_browser_sends_from_any_site_without_asking(string type)
    {
        using var content = new StringContent(Csv(Features(0, 2)));
        content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(type);
        using var response = await server.Client.PostAsync("/predict", content);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        string message = Error(await response.Content.ReadAsStringAsync());
        Assert.StartsWith($"a body of type '{type.Split(';')[0]}' is refused", message);
        Assert.Contains("send text/csv or application/json", message);
    }

    public static TheoryData<string> GetPaths() => ["/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/hits", "/v2/models/hits/ready", "/",
        "/page.js", "/page.css", "/model", "/v2/models/other"];

    [Theory]
    [MemberData(nameof(GetPaths))]
    public async Task Head_is_answered_with_the_status_and_headers_of_get_and_no_body(string path)
    {
        using var get = await server.Client.GetAsync(path);
        byte[] body = await get.Content.ReadAsByteArrayAsync();
        using var head = await server.Client.SendAsync(new HttpRequestMessage(HttpMethod.Head, path));
        Assert.Equal(get.StatusCode, head.StatusCode);
        Assert.Equal(get.Content.Headers.ContentType, head.Content.Headers.ContentType);
        Assert.Equal(body.Length, get.Content.Headers.ContentLength);
        Assert.Equal(body.Length, head.Content.Headers.ContentLength);
        Assert.Empty(await head.Content.ReadAsByteArrayAsync());
    }

    [Theory]
    [InlineData("GET", "/v2/health/live", null, 200)]
    [InlineData("GET", "/", null, 200)]
    [InlineData("GET", "/nothing", null, 404)]
    [InlineData("DELETE", "/predict", null, 405)]
    [InlineData("POST", "/predict", "[{\"energy\": 1}]", 400)]
    [InlineData("POST", "/v2/models/hits/infer", "infer", 200)]
    public async Task Every_answer_tells_browsers_not_to_guess_its_type(string method, string path, string? body, int status)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null)
            request.Content = new StringContent(body == "infer" ? Infer(Features(5, 1)) : body, System.Text.Encoding.UTF8, "application/json");
        using var response = await server.Client.SendAsync(request);
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("nosniff", Assert.Single(response.Headers.GetValues("X-Content-Type-Options")));
    }

    private static async Task<(HttpStatusCode Status, string Body)> GetAs(HttpClient client, string host, string path = "/v2/models/hits")
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Host = host;
        using var response = await client.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("LocalHost:8080")]
    [InlineData("127.0.0.1")]
    [InlineData("127.3.2.1:80")]
    [InlineData("[::1]:8080")]
    public async Task A_server_on_the_loopback_answers_loopback_names(string host) =>
        Assert.Equal(HttpStatusCode.OK, (await GetAs(server.Client, host)).Status);

    [Theory]
    [InlineData("attacker.example", "/v2/models/hits")]
    [InlineData("attacker.example:8080", "/v2/health/ready")]
    [InlineData("localhost.attacker.example", "/nothing")]
    [InlineData("192.168.1.20", "/")]
    public async Task A_server_on_the_loopback_refuses_any_other_host_name_on_every_path(string host, string path)
    {
        var (status, body) = await GetAs(server.Client, host, path);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.StartsWith($"the Host '{host.Split(':')[0]}' is refused: a server on a loopback address answers loopback names only", Error(body));
    }

    [Fact]
    public async Task The_allowed_hosts_are_those_named_or_any_with_a_star()
    {
        await using (var named = await server.StartAsync(server.Model, new ServeOptions
            { Name = "hits", Port = 0, AllowedHosts = ["hits.example", "Other.Example"] }))
        {
            using var client = ServerFixture.ClientOf(named);
            Assert.Equal(HttpStatusCode.OK, (await GetAs(client, "hits.example:8080")).Status);
            Assert.Equal(HttpStatusCode.OK, (await GetAs(client, "other.example")).Status);
            var (status, body) = await GetAs(client, "localhost");
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal("the Host 'localhost' is refused: it is not one this server answers to (ServeOptions.AllowedHosts)", Error(body));
        }
        await using var any = await server.StartAsync(server.Model, new ServeOptions { Name = "hits", Port = 0, AllowedHosts = ["*"] });
        Assert.Equal(HttpStatusCode.OK, (await GetAs(ServerFixture.ClientOf(any), "anything.example")).Status);
    }

    [Fact]
    public async Task With_an_api_key_every_path_but_health_needs_it_as_a_bearer_token_or_x_api_key()
    {
        const string key = "s3cret-Key_1";
        await using var keyed = await server.StartAsync(server.Model, new ServeOptions { Name = "hits", Port = 0, ApiKey = key });
        using var client = ServerFixture.ClientOf(keyed);
        async Task<(HttpStatusCode Status, string Body, HttpResponseMessage Response)>
            Ask(string method, string path, string? header = null, string? value = null)
        {
            var request = new HttpRequestMessage(new HttpMethod(method), path);
            if (method == "POST")
                request.Content = new StringContent(Infer(Features(8, 1)), System.Text.Encoding.UTF8, "application/json");
            if (header is not null)
                request.Headers.TryAddWithoutValidation(header, value);
            var response = await client.SendAsync(request);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(), response);
        }

        foreach (var (method, path) in new[] { ("GET", "/v2/models/hits"), ("POST", "/v2/models/hits/infer"), ("GET", "/"), ("GET", "/model"),
            ("GET", "/v2"), ("GET", "/nothing"), ("HEAD", "/v2/models/hits/ready") })
        {
            var (status, body, response) = await Ask(method, path);
            Assert.True(status == HttpStatusCode.Unauthorized, $"{method} {path}: {status}");
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
            if (method != "HEAD")
                Assert.Equal("this server needs an API key: send Authorization: Bearer KEY or X-Api-Key: KEY", Error(body));
        }
        foreach (var (header, value) in new[] { ("Authorization", "Bearer s3cret-Key_2"), ("Authorization", "Bearer s3cret-Key_"),
            ("X-Api-Key", "S3CRET-KEY_1"), ("Authorization", key), ("Authorization", "Basic " + key) })
        {
            var (status, body, _) = await Ask("GET", "/v2/models/hits", header, value);
            Assert.True(status == HttpStatusCode.Unauthorized, $"{header}: {value}: {status}");
            Assert.DoesNotContain(key, body);
        }
        Assert.Equal("the API key is not this server's", Error((await Ask("GET", "/v2", "X-Api-Key", "wrong")).Body));
        Assert.Equal(HttpStatusCode.OK, (await Ask("POST", "/v2/models/hits/infer", "Authorization", "Bearer " + key)).Status);
        Assert.Equal(HttpStatusCode.OK, (await Ask("GET", "/model", "Authorization", "bearer " + key)).Status);
        Assert.Equal(HttpStatusCode.OK, (await Ask("GET", "/v2/models/hits", "X-Api-Key", key)).Status);
        foreach (string probe in new[] { "/v2/health/live", "/v2/health/ready" })
            Assert.Equal(HttpStatusCode.OK, (await Ask("GET", probe)).Status);
    }
}
