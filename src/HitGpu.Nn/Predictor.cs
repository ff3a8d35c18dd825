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

    private float[] PredictAlone(SongTable songs)
    {
        int rows = songs.Count, width = model.Preprocessing.NetworkInputs;
        DeviceBuffer<float>.AtLeast(device, ref inputs, Math.Max(1, rows), width);
        inputs.CopyFrom(0, model.Preprocessing.Apply(songs.Features));
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
