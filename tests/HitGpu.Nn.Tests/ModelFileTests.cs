// The model file: round trip to the same probabilities, a format other tools can read, and refusal of
// truncated, edited or mismatched files. Writes are atomic.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class ModelFileTests(AcceleratorFixture fixture) : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-model-").FullName;
    private static readonly Lazy<SongTable> Songs = new(SongData.LoadEmbedded90s);
    private static readonly Lazy<TrainingResult> Trained = new(() =>
    {
        using var device = ComputeDevice.Open(AcceleratorKind.Cpu);
        return Trainer.Train(device, Songs.Value, TrainingOptions.Study with { Epochs = 3 });
    });

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string Saved(string name = "model.hitgpu")
    {
        string path = Path.Combine(folder, name);
        ModelFile.Save(Trained.Value.Model, path);
        return path;
    }

    [Fact]
    public void Loaded_model_predicts_the_same_probabilities_as_the_saved_one()
    {
        var result = Trained.Value;
        var loaded = ModelFile.Load(Saved());
        var test = Songs.Value.Subset(result.Split.Test);
        var before = result.Model.PredictProbabilities(fixture.Device, test);
        var after = loaded.PredictProbabilities(fixture.Device, test);
        Assert.Equal(before, after);
        Assert.Equal(result.Model.Preprocessing.Means, loaded.Preprocessing.Means);
        Assert.Equal(result.Model.Preprocessing.Deviations, loaded.Preprocessing.Deviations);
        Assert.Equal(InputTransform.Standard, loaded.Preprocessing.Transform);
        // And they are the network's: evaluating them reproduces the trainer's own test accuracy.
        Assert.Equal(result.TestAccuracy, Evaluation.Of(after, test.Labels!).Accuracy, 12);
        Assert.Equal(SongData.EmbeddedName, loaded.Provenance!.Data[0].Source);
        Assert.Equal("aeeed288dc138c8ef7ef3da8fcbf23d2c0e72afd4067baf40804d8f129196235", loaded.Provenance.Data[0].Sha256);
        Assert.Equal(3, loaded.Provenance.Epochs);
    }

    [Theory]
    [InlineData(EnsembleKind.Independent)]
    [InlineData(EnsembleKind.Batch)]
    [InlineData(EnsembleKind.Mini)]
    public void An_ensemble_with_encoded_quantile_inputs_round_trips_in_format_2(EnsembleKind kind)
    {
        var options = TrainingOptions.Study with
        {
            Epochs = 2, EnsembleSize = 3, EnsembleKind = kind, Inputs = InputTransform.Quantile,
            Encoding = new FeatureEncoding(FeatureEncoding.SkewedFeatures, FeatureEncoding.CategoricalFeatures),
        };
        var result = Trainer.Train(fixture.Device, Songs.Value, options);
        Assert.Single(result.Model.Networks);
        Assert.Equal(2, result.History.Count);
        string path = Path.Combine(folder, $"ensemble-{kind}.hitgpu");
        ModelFile.Save(result.Model, path);
        var loaded = ModelFile.Load(path);
        Assert.Equal((kind, 3), (loaded.Layout.Kind, loaded.Layout.Members));
        Assert.Equal(result.Model.Networks[0], loaded.Networks[0]);
        var test = Songs.Value.Subset(result.Split.Test);
        var averaged = loaded.PredictProbabilities(fixture.Device, test);
        Assert.Equal(result.Model.PredictProbabilities(fixture.Device, test), averaged);
        Assert.Equal(result.TestAccuracy, Evaluation.Of(averaged, test.Labels!).Accuracy, 12);
        Assert.Equal(options.Encoding.Width, loaded.Layout.Widths[0]);
        Assert.Equal(InputTransform.Quantile, loaded.Preprocessing.Transform);
        Assert.Equal(result.Model.Preprocessing.Knots, loaded.Preprocessing.Knots);

        // Format 2, with the adapters as named safetensors tensors of their own shapes.
        string header = System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(path), 8, 4000);
        Assert.Contains(ModelFile.EnsembleFormat, header);
        Assert.Contains("\"network0.layer2.weight\":{\"dtype\":\"F32\",\"shape\":[3,1,32]", header); // per-member heads
        Assert.Equal(kind != EnsembleKind.Independent, header.Contains("network0.layer0.input_scale"));
        Assert.Equal(kind == EnsembleKind.Batch, header.Contains("network0.layer1.output_scale"));
    }

    [Theory]
    [InlineData(1, EnsembleKind.Independent)]
    [InlineData(3, EnsembleKind.Mini)]
    public void A_piecewise_embedding_round_trips_in_format_2(int members, EnsembleKind kind)
    {
        var options = new TrainingOptions { Epochs = 2, EnsembleSize = members, EnsembleKind = kind, Embedding = NumericEmbedding.Piecewise,
            EmbeddingBins = 6, EmbeddingDimension = 3 };
        var result = Trainer.Train(fixture.Device, Songs.Value, options);
        Assert.Equal([15 * 7, 15 * 3, 64, 32, 1], result.Model.Layout.Widths);
        Assert.Equal([15, 1, 1, 1], result.Model.Layout.Groups);
        string path = Path.Combine(folder, $"embedded-{members}.hitgpu");
        ModelFile.Save(result.Model, path);
        var loaded = ModelFile.Load(path);
        Assert.Equal(InputTransform.Embedding(6), loaded.Preprocessing.Transform);
        Assert.Equal(result.Model.Layout.Groups, loaded.Layout.Groups);
        Assert.Equal((kind, members), (loaded.Layout.Kind, loaded.Layout.Members));
        Assert.Equal(result.Model.Networks[0], loaded.Networks[0]);
        var test = Songs.Value.Subset(result.Split.Test);
        Assert.Equal(result.Model.PredictProbabilities(fixture.Device, test), loaded.PredictProbabilities(fixture.Device, test));
        string header = System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(path), 8, 3000);
        Assert.Contains(ModelFile.EnsembleFormat, header);
        Assert.Contains("\"network0.layer0.weight\":{\"dtype\":\"F32\",\"shape\":[45,7]", header); // 15 features x 3 outputs, each over its own 7 inputs
    }

    [Fact]
    public void Robust_inputs_make_even_a_plain_network_format_2()
    {
        // Format 1 cannot name the robust transform (an older version would read its knots as quantile ones).
        var result = Trainer.Train(fixture.Device, Songs.Value, TrainingOptions.Study with { Epochs = 2, Inputs = InputTransform.Robust });
        Assert.True(result.Model.Layout.IsPlain);
        string path = Path.Combine(folder, "robust.hitgpu");
        ModelFile.Save(result.Model, path);
        Assert.Contains(ModelFile.EnsembleFormat, System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(path), 8, 2000));
        var loaded = ModelFile.Load(path);
        Assert.Equal(InputTransform.Robust, loaded.Preprocessing.Transform);
        var test = Songs.Value.Subset(result.Split.Test);
        Assert.Equal(result.Model.PredictProbabilities(fixture.Device, test), loaded.PredictProbabilities(fixture.Device, test));
    }

    [Fact]
    public void A_periodic_embedding_round_trips_with_its_cosines()
    {
        var options = new TrainingOptions { Epochs = 2, EnsembleSize = 2, EnsembleKind = EnsembleKind.Batch, Embedding = NumericEmbedding.Periodic,
            EmbeddingFrequencies = 5, EmbeddingDimension = 3 };
        var result = Trainer.Train(fixture.Device, Songs.Value, options);
        Assert.Equal([15, 15 * 5, 15 * 3, 64, 32, 1], result.Model.Layout.Widths);
        Assert.Equal(Activation.Cos, result.Model.Layout.ActivationOf(0));
        string path = Path.Combine(folder, "periodic.hitgpu");
        ModelFile.Save(result.Model, path);
        var loaded = ModelFile.Load(path);
        Assert.Equal(result.Model.Layout.Activations, loaded.Layout.Activations);
        Assert.Equal(result.Model.Layout.Groups, loaded.Layout.Groups);
        Assert.Equal(InputTransform.Quantile, loaded.Preprocessing.Transform);
        var test = Songs.Value.Subset(result.Split.Test);
        Assert.Equal(result.Model.PredictProbabilities(fixture.Device, test), loaded.PredictProbabilities(fixture.Device, test));
        Assert.True(result.TestAccuracy > 0.75, $"test accuracy {result.TestAccuracy:P2}");
    }

    [Fact]
    public void Piecewise_linear_inputs_round_trip_and_the_validation_reading_is_the_models()
    {
        var options = TrainingOptions.Study with { Epochs = 1, EnsembleSize = 2, Inputs = InputTransform.Piecewise(4) };
        var result = Trainer.Train(fixture.Device, Songs.Value, options);
        Assert.Equal(SongData.FeatureCount * 4, result.Model.Layout.Widths[0]);
        string path = Path.Combine(folder, "piecewise.hitgpu");
        ModelFile.Save(result.Model, path);
        var loaded = ModelFile.Load(path);
        Assert.Equal(InputTransform.Piecewise(4), loaded.Preprocessing.Transform);
        var validation = Songs.Value.Subset(result.Split.Validation);
        var p = loaded.PredictProbabilities(fixture.Device, validation);
        Assert.Equal(result.Model.PredictProbabilities(fixture.Device, validation), p);
        // The trainer's ensemble reading of the validation part is the saved model's.
        Assert.Equal(result.Validation.Accuracy, Evaluation.Of(p, validation.Labels!).Accuracy, 12);
        Assert.Equal(result.Validation.LogLoss, Evaluation.Of(p, validation.Labels!).LogLoss, 6);
    }

    [Fact]
    public void File_is_plain_safetensors_that_another_reader_understands()
    {
        var bytes = File.ReadAllBytes(Saved());
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength))!.AsObject();
        var weight = header["member0.layer1.weight"]!;
        Assert.Equal("F32", (string?)weight["dtype"]);
        Assert.Equal([32, 64], weight["shape"]!.AsArray().Select(v => (int)v!));
        long start = (long)weight["data_offsets"]![0]!;
        var layout = Trained.Value.Model.Layout;
        float first = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(8 + (int)headerLength + (int)start));
        Assert.Equal(Trained.Value.Model.Networks[0][layout.WeightOffset(1)], first);
        Assert.Equal(0, (8 + headerLength) % 8); // tensors start aligned
    }

    [Fact]
    public void Truncated_file_is_refused()
    {
        var bytes = File.ReadAllBytes(Saved());
        foreach (int length in new[] { 0, 5, 100, bytes.Length - 1 })
        {
            string path = Path.Combine(folder, $"cut{length}.hitgpu");
            File.WriteAllBytes(path, bytes[..length]);
            var error = Assert.Throws<InputException>(() => ModelFile.Load(path));
            Assert.StartsWith($"{path}: not a valid HitGpu model: ", error.Message);
        }
    }

    [Fact]
    public void Edited_weight_or_metadata_is_refused_by_the_checksum()
    {
        var bytes = File.ReadAllBytes(Saved());
        var weight = (byte[])bytes.Clone();
        weight[^3] ^= 0x40;
        string weightPath = Path.Combine(folder, "weight.hitgpu");
        File.WriteAllBytes(weightPath, weight);
        Assert.Contains("checksum mismatch", Assert.Throws<InputException>(() => ModelFile.Load(weightPath)).Message);

        string text = Encoding.UTF8.GetString(bytes);
        int at = text.IndexOf("means", StringComparison.Ordinal);
        var meta = (byte[])bytes.Clone();
        int digit = Array.FindIndex(meta, at + 10, b => b is >= (byte)'1' and <= (byte)'8');
        meta[digit]++; // one digit of a mean, same length
        string metaPath = Path.Combine(folder, "meta.hitgpu");
        File.WriteAllBytes(metaPath, meta);
        Assert.Contains("checksum mismatch", Assert.Throws<InputException>(() => ModelFile.Load(metaPath)).Message);
    }

    [Fact]
    public void A_file_whose_tensors_do_not_fit_its_network_is_refused()
    {
        // Rewrite the declared widths to 15-8-1 and sign the file again, as a buggy writer would: the
        // checksum then passes, and the shape check must catch it.
        var file = Resigned(File.ReadAllBytes(Saved()), hitgpu =>
        {
            hitgpu["widths"] = new JsonArray(15, 8, 1);
            hitgpu["activations"] = new JsonArray("relu", "identity");
        });
        string path = Path.Combine(folder, "shape.hitgpu");
        File.WriteAllBytes(path, file);
        var error = Assert.Throws<InputException>(() => ModelFile.Load(path));
        Assert.Contains("member0.layer0.weight' has shape [64,15], expected [8,15]", error.Message);
    }

    [Theory]
    [InlineData("relu,tanh,identity", "unknown activation 'tanh'")]
    [InlineData("relu,relu,relu", "the last layer must be a logit")]
    [InlineData("relu,identity", "one activation per layer (3)")]
    [InlineData("relu,1,identity", "unknown activation '1'")]
    public void Activations_are_read_and_checked(string activations, string expected)
    {
        var file = Resigned(File.ReadAllBytes(Saved()), hitgpu => hitgpu["activations"] = new
            JsonArray(activations.Split(',').Select(a => (JsonNode)a!).ToArray()));
        string path = Path.Combine(folder, "activations.hitgpu");
        File.WriteAllBytes(path, file);
        Assert.Contains(expected, Assert.Throws<InputException>(() => ModelFile.Load(path)).Message);
    }

    [Fact]
    public void A_file_without_all_the_training_statistics_predicts_as_before_without_them()
    {
        // Files written before the medians were kept have min and max only: they load, and predict the same.
        var file = Resigned(File.ReadAllBytes(Saved()), hitgpu => hitgpu.Remove("feature_median"));
        string path = Path.Combine(folder, "no-median.hitgpu");
        File.WriteAllBytes(path, file);
        var loaded = ModelFile.Load(path);
        Assert.Null(loaded.Preprocessing.Statistics);
        Assert.NotNull(Trained.Value.Model.Preprocessing.Statistics);
        var songs = Songs.Value.Subset(Enumerable.Range(0, 100).ToArray());
        Assert.Equal(Trained.Value.Model.PredictProbabilities(fixture.Device, songs), loaded.PredictProbabilities(fixture.Device, songs));
    }

    [Fact]
    public void The_activations_a_file_names_are_the_ones_it_predicts_with()
    {
        // The same weights with a sigmoid after the first layer: the loaded network must apply it.
        var file = Resigned(File.ReadAllBytes(Saved()), hitgpu => hitgpu["activations"] = new JsonArray("sigmoid", "relu", "identity"));
        string path = Path.Combine(folder, "sigmoid.hitgpu");
        File.WriteAllBytes(path, file);
        var model = ModelFile.Load(path);
        Assert.Equal(Activation.Sigmoid, model.Layout.ActivationOf(0));
        var songs = Songs.Value.Subset(Enumerable.Range(0, 50).ToArray());
        var p = model.PredictProbabilities(fixture.Device, songs);
        Assert.NotEqual(Trained.Value.Model.PredictProbabilities(fixture.Device, songs), p);
        // The reference forward: with every label 1, a sample's loss is -log p.
        var x = model.Preprocessing.Apply(songs.Features);
        var loss = new float[songs.Count];
        NetworkReference.Step<float>(model.Layout, model.Networks[0], x, Enumerable.Repeat(1f, songs.Count).ToArray(), songs.Count, [],
            StepSettings.Default, 0, loss);
        for (int i = 0; i < songs.Count; i++)
            Tolerance.Close(Math.Exp(-loss[i]), p[i], $"probability {i}", 1e-5, 1e-4);
    }

    private static byte[] Resigned(byte[] bytes, Action<JsonObject> edit) => ModelBytes.Edited(bytes, editMetadata: edit);

    [Fact]
    public void A_failed_write_leaves_the_previous_file_and_no_temporary()
    {
        string path = Saved();
        var good = File.ReadAllBytes(path);
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[100]);
            throw new InvalidOperationException("disk full, say");
        }));
        Assert.Equal(good, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(folder));
        string nowhere = Path.Combine(folder, "missing-folder", "m.hitgpu");
        Assert.Contains("does not exist", Assert.Throws<InputException>(() => ModelFile.Save(Trained.Value.Model, nowhere)).Message);
        Assert.False(File.Exists(nowhere));
    }
    // Written by the code of commit ce638d5 (before the preprocessing and layout moved): a single network on
    // raw standardised inputs, an ensemble on log, one-hot and quantile inputs with dropout, and piecewise-linear
    // inputs; beside each, its probabilities on every 10th song of the embedded file (float "R" format). The
    // format-2 files were written by the code that introduced the format (batched ensembles, issue 11): a batch
    // ensemble behind a periodic embedding, a mini ensemble behind a piecewise one, and an independent ensemble
    // on robust inputs, so later versions are held to them too.
    [Theory]
    [InlineData("study")]
    [InlineData("quantile-ensemble")]
    [InlineData("piecewise")]
    [InlineData("batch-periodic")]
    [InlineData("mini-piecewise")]
    [InlineData("independent-robust")]
    public void Files_written_by_an_earlier_version_load_and_predict_the_same(string name)
    {
        string fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");
        var model = ModelFile.Load(Path.Combine(fixtures, name + ".hitgpu"));
        var expected = File.ReadAllLines(Path.Combine(fixtures, name + ".expected.csv")).Skip(1)
            .Select(line => line.Split(',')).Select(f => (Row: int.Parse(f[0]),
                P: float.Parse(f[1], System.Globalization.CultureInfo.InvariantCulture))).ToArray();
        var songs = Songs.Value.Subset(expected.Select(e => e.Row).ToArray());
        var actual = model.PredictProbabilities(fixture.Device, songs);
        // The CPU accelerator sums each output in a fixed order: the same bits. A GPU may fuse multiply-adds.
        if (fixture.Device.Kind == AcceleratorKind.Cpu)
            Assert.Equal(expected.Select(e => e.P), actual);
        else
            Tolerance.AllClose(expected.Select(e => e.P).ToArray(), actual, "probability", 1e-6, 1e-5);
        Assert.Contains(actual, p => p > 0.5f);
        Assert.Contains(actual, p => p < 0.5f);
    }
}
