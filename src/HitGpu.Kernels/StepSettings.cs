// What every training step shares: Adam's constants and weight decay, dropout and label smoothing.
namespace HitGpu.Kernels;

/// <summary>
/// How every training step runs, whatever the step: Adam's constants, decoupled weight decay, and dropout on
/// the hidden units (the mask drawn from DropoutSeed). One struct for the layered step, the CPU epoch and
/// their references.
/// </summary>
public struct StepSettings
{
    public float Beta1, Beta2, Epsilon, WeightDecay;
    public float DropoutRate; // 0 = off
    public uint DropoutSeed;
    public float LabelSmoothing; // training targets y (1 - e) + e / 2 (RealMLP); 0 = off

    // Keras' defaults, as in the original study (PyTorch's epsilon is 1e-8).
    public static StepSettings Default => new() { Beta1 = 0.9f, Beta2 = 0.999f, Epsilon = 1e-7f };
}
