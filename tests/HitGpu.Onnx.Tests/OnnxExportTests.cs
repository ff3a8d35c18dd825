// The ONNX export run by ONNX Runtime: on every song of the embedded file, its probabilities equal
// hitgpu predict's (HitModel.PredictProbabilities) within 1e-5, for each preprocessing and network the
// trainer makes: the study's, the defaults (quantile inputs, five members), piecewise-linear inputs with log and
// one-hot features, and a hidden sigmoid layer read from a model file.
using HitGpu.Cli;
using HitGpu.Nn.Onnx;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace HitGpu.Onnx.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class OnnxExportTests(AcceleratorFixture fixture) : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-onnx-").FullName;
    private static readonly Lazy<SongTable> Songs = new(SongData.LoadEmbedded90s);

    public void Dispose() => Directory.Delete(folder, recursive: true);

    /// <summary>ONNX Runtime's probabilities for every song, from the exported bytes.</summary>
    private static float[] RunOnnx(byte[] onnx, SongTable songs)
    {
        using var session = new InferenceSession(onnx);
        var input = new DenseTensor<float>(songs.Features, [songs.Count, SongData.FeatureCount]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExport.InputName, input)]);
        var output = Assert.Single(results);
        Assert.Equal(OnnxExport.OutputName, output.Name);
        return output.AsEnumerable<float>().ToArray();
    }

    public static TheoryData<string> Configurations() => ["study", "defaults", "piecewise-log-one-hot", "standard-log-one-hot", "batch-ensemble",
        "mini-ensemble", "piecewise-embedding", "periodic-embedding", "robust"];

    private static TrainingOptions Options(string name) => name switch
    {
        "study" => TrainingOptions.Study with { Epochs = 3 },
        "defaults" => new TrainingOptions { Epochs = 3 },
        // Members with adapters: exported as plain networks with r and s folded into their weights.
        "batch-ensemble" => new TrainingOptions { Epochs = 2, EnsembleKind = EnsembleKind.Batch, EnsembleSize = 8 },
        "mini-ensemble" => new TrainingOptions { Epochs = 2, EnsembleKind = EnsembleKind.Mini, EnsembleSize = 4 },
        // A grouped embedding layer, exported as a dense layer with zeros outside each feature's block.
        "robust" => TrainingOptions.Study with { Epochs = 2, Inputs = InputTransform.Robust },
        "periodic-embedding" => new TrainingOptions { Epochs = 2, EnsembleSize = 2, Embedding = NumericEmbedding.Periodic, EmbeddingFrequencies = 4,
            EmbeddingDimension = 3 },
        "piecewise-embedding" => new TrainingOptions { Epochs = 2, EnsembleKind = EnsembleKind.Batch, EnsembleSize = 3,
            Embedding = NumericEmbedding.Piecewise, EmbeddingBins = 8, EmbeddingDimension = 4 },
        "piecewise-log-one-hot" => TrainingOptions.Study with
        {
            Epochs = 2, EnsembleSize = 2, Inputs = InputTransform.Piecewise(8),
            Encoding = new FeatureEncoding(FeatureEncoding.SkewedFeatures, FeatureEncoding.CategoricalFeatures),
        },
        _ => TrainingOptions.Study with { Epochs = 2, Encoding = new FeatureEncoding(["duration_ms", "liveness"], ["key"]) },
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void ONNX_Runtime_gives_hitgpus_probabilities_on_every_embedded_song(string configuration)
    {
        var model = Trainer.Train(fixture.Device, Songs.Value, Options(configuration)).Model;
        var expected = model.PredictProbabilities(fixture.Device, Songs.Value);
        var actual = RunOnnx(OnnxExport.ToBytes(model), Songs.Value);
        Assert.Equal(Songs.Value.Count, actual.Length);
        Tolerance.AllClose(expected, actual, $"{configuration}: ONNX probability", abs: 1e-5, rel: 0);
        Assert.Contains(actual, p => p > 0.5f);
        Assert.Contains(actual, p => p < 0.5f);
    }

    [Fact]
    public void Hitgpu_export_writes_a_file_that_ONNX_Runtime_runs_and_the_hidden_activations_are_the_models()
    {
        // A model file with a sigmoid after its first layer: the export must use the activations the file names.
        string model = Path.Combine(folder, "m.hitgpu"), onnx = Path.Combine(folder, "m.onnx");
        var trained = Trainer.Train(fixture.Device, Songs.Value, TrainingOptions.Study with { Epochs = 2, Hidden = [16, 8] }).Model;
        var sigmoid = trained with { Layout = new ParameterLayout(trained.Layout.Widths, [Activation.Sigmoid, Activation.Relu, Activation.Identity]) };
        ModelFile.Save(sigmoid, model);
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(0, HitGpuCli.Run(["export", "--model", model, "--onnx", onnx], output, error));
        Assert.StartsWith($"ONNX model written to {onnx}: input 'features' (N, 15)", output.ToString());
        var expected = ModelFile.Load(model).PredictProbabilities(fixture.Device, Songs.Value);
        Tolerance.AllClose(expected, RunOnnx(File.ReadAllBytes(onnx), Songs.Value), "ONNX probability", abs: 1e-5, rel: 0);
        Assert.NotEqual(trained.PredictProbabilities(fixture.Device, Songs.Value), expected);
        // The export refuses to overwrite its input.
        Assert.Equal(HitGpuCli.BadInput, HitGpuCli.Run(["export", "--model", model, "--onnx", model], output, error));
    }
}
