// The endpoints mapped into an app of one's own (HitEndpoints.Map), beside its own routes: what a team that
// hosts ASP.NET Core already does.
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using static HitGpu.Serve.Tests.Http;

namespace HitGpu.Serve.Tests;

[Collection(ServerCollection.Name)]
public sealed class HostingTests(ServerFixture server)
{
    [Fact]
    public async Task The_endpoints_serve_inside_an_app_of_ones_own()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        await using var hits = new HitEndpoints(server.Model, server.Device, new ServeOptions { Name = "catalogue" });
        app.MapGet("/own", () => "the app's own route");
        hits.Map(app);
        await app.StartAsync();
        using var client = new HttpClient { BaseAddress = new
            Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()) };

        Assert.Equal("the app's own route", (await Get(client, "/own")).Body);
        var features = Features(900, 12);
        var (status, body, _) = await Post(client, "/v2/models/catalogue/infer", Infer(features));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(server.Model.PredictProbabilities(server.Device, new SongTable { Source = "test", Features = features }), Probabilities(body));
        await app.StopAsync();
    }
}
