// One trained model and one server for the HTTP tests: a real Kestrel on a free loopback port, its request
// log kept for the tests that read it. The model is the study's network trained for a few epochs (seconds).
using HitGpu.Cli;

namespace HitGpu.Serve.Tests;

public sealed class ServerFixture : IAsyncLifetime
{
    public string Folder { get; } = Directory.CreateTempSubdirectory("hitgpu-serve-").FullName;
    public string ModelPath => Path.Combine(Folder, "hits.hitgpu");
    public HitModel Model { get; private set; } = null!;
    public ComputeDevice Device { get; } = ComputeDevice.Open(AcceleratorKind.Cpu);
    public HitServer Server { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;
    private readonly StringWriter log = new();
    public TextWriter Log { get; }

    public ServerFixture() => Log = TextWriter.Synchronized(log);

    /// <summary>The request log so far.</summary>
    public string LogText { get { lock (Log) return log.ToString(); } }

    /// <summary>The embedded 90s songs, a model's input in every test.</summary>
    public static readonly SongTable Songs = SongData.LoadEmbedded90s();

    public async ValueTask InitializeAsync()
    {
        var error = new StringWriter();
        int code = HitGpuCli.Run(["train", "--study", "--epochs", "3", "--out", ModelPath], new StringWriter(), error);
        Assert.True(code == 0, error.ToString());
        Model = ModelFile.Load(ModelPath);
        Server = await StartAsync(Model,
            new ServeOptions { Name = "hits", ModelFile = ModelPath, Port = 0, GrpcPort = 0, RequestLog = Log, MaxRows = 5000, MaxBodyBytes = 4 << 20 });
        Client = ClientOf(Server);
    }

    public Task<HitServer> StartAsync(HitModel model, ServeOptions options) => HitServer.StartAsync(model, Device, options);

    public static HttpClient ClientOf(HitServer server) => new() { BaseAddress = new Uri(server.Addresses[0]) };

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        Device.Dispose();
        Directory.Delete(Folder, recursive: true);
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "server";
}
