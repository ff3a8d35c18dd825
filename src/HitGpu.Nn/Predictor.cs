// Scoring songs with a trained model, a chunk at a time: the network's device buffers and the chunk's input
// buffer are made once and reused, so scoring a catalog of any size takes the memory of one chunk. Those
// buffers are the predictor's state, so one predictor shared by threads lets one call at a time use them
// (a lock): safe to share (a web server's handlers, a parallel loop), each call's answer its own.
using HitGpu.Kernels;

namespace HitGpu.Nn;

/// <summary>Scores songs with one model. Thread-safe: concurrent calls take turns on the device buffers.</summary>
public sealed class Predictor : IDisposable
{
    private readonly Lock gate = new();
    private readonly ComputeDevice device;
    private readonly HitModel model;
    private readonly Network network;
    private DeviceBuffer<float>? inputs; // (capacity, network inputs)

    public Predictor(ComputeDevice device, HitModel model)
    {
        this.device = device;
        this.model = model;
        network = new Network(device, model.Layout, Network.ChunkRows);
    }

    /// <summary>P(hit) for every song of the chunk: the members' probabilities averaged, each computed by the device kernels.</summary>
    public float[] Predict(SongTable songs)
    {
        lock (gate)
            return PredictAlone(songs);
    }

    /// <summary>
    /// P(hit) for rows whose network inputs were already made (<see cref="Preprocessing.Apply"/>, row by row):
    /// for a caller that prepares them on its own threads (a server's handlers) while the device scores others.
    /// </summary>
    public float[] PredictPrepared(float[] networkInputs)
    {
        if (networkInputs.Length % model.Preprocessing.NetworkInputs != 0)
            throw new ArgumentException($"{networkInputs.Length} network inputs are not whole rows of {model.Preprocessing.NetworkInputs}");
        lock (gate)
            return PredictAlone(networkInputs);
    }

    private float[] PredictAlone(SongTable songs) => PredictAlone(model.Preprocessing.Apply(songs.Features));

    private float[] PredictAlone(float[] networkInputs)
    {
        int width = model.Preprocessing.NetworkInputs, rows = networkInputs.Length / width;
        DeviceBuffer<float>.AtLeast(device, ref inputs, Math.Max(1, rows), width);
        inputs.CopyFrom(0, networkInputs);
        var sum = new double[rows];
        var p = new float[rows];
        foreach (var member in model.Networks)
        {
            network.Reset(member);
            network.PredictProbabilities(inputs, rows, p);
            for (int i = 0; i < rows; i++)
                sum[i] += p[i];
        }
        for (int i = 0; i < rows; i++)
            p[i] = (float)(sum[i] / model.Networks.Count);
        return p;
    }

    public void Dispose()
    {
        lock (gate)
            DisposeAlone();
    }

    private void DisposeAlone()
    {
        network.Dispose();
        inputs?.Dispose();
    }
}
