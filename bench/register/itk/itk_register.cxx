// bench/register/itk/itk_register.cxx — ITK's Mattes-MI rigid registration (ImageRegistration-
// Methodv4, Euler3DTransform, MattesMutualInformationImageToImageMetricv4) on raw float32
// volumes, set up as radprep's is: 32 bins, fixed mask, random sampling with the given fraction
// per level, shrink 4/2/1 with smoothing sigma 2/1/0 voxels, rotation centre given, identity
// start, linear interpolation, parameter scales from physical shift, at most 200 iterations per
// level, largest step 2/1/0.5 mm per level.
//   itk_register MODE fixed.raw nx ny nz sx sy sz ox oy oz mask.raw moving.raw mx my mz msx msy
//                msz mox moy moz cx cy cz threads pct0 pct1 pct2
// MODE rsgd: RegularStepGradientDescentOptimizerv4 (relaxation 0.5, learning rate re-estimated
//            every iteration from the physical-shift scales, minimum step 0.005 mm at the finest
//            level); gd: GradientDescentOptimizerv4 with ITK's convergence monitor (window 10,
//            minimum convergence value 1e-6) — the setup of the SimpleITK registration examples.
// Prints JSON: seconds (registration Update only), the world matrix fixed -> moving, iterations.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "itkCommand.h"
#include "itkEuler3DTransform.h"
#include "itkGradientDescentOptimizerv4.h"
#include "itkImage.h"
#include "itkImageMaskSpatialObject.h"
#include "itkImageRegistrationMethodv4.h"
#include "itkMattesMutualInformationImageToImageMetricv4.h"
#include "itkMultiThreaderBase.h"
#include "itkRegistrationParameterScalesFromPhysicalShift.h"
#include "itkRegularStepGradientDescentOptimizerv4.h"

using ImageType = itk::Image<float, 3>;
using MaskImageType = itk::Image<unsigned char, 3>;
using TransformType = itk::Euler3DTransform<double>;
using RegType = itk::ImageRegistrationMethodv4<ImageType, ImageType, TransformType>;
using MetricType = itk::MattesMutualInformationImageToImageMetricv4<ImageType, ImageType>;
using RSGD = itk::RegularStepGradientDescentOptimizerv4<double>;
using GD = itk::GradientDescentOptimizerv4;
using ScalesType = itk::RegistrationParameterScalesFromPhysicalShift<MetricType>;

template <typename T>
static typename itk::Image<T, 3>::Pointer load(const char *path, char **a)
{
    int n[3] = {atoi(a[0]), atoi(a[1]), atoi(a[2])};
    double sp[3] = {atof(a[3]), atof(a[4]), atof(a[5])};
    double org[3] = {atof(a[6]), atof(a[7]), atof(a[8])};
    auto img = itk::Image<T, 3>::New();
    typename itk::Image<T, 3>::SizeType size;
    for (int d = 0; d < 3; d++)
        size[d] = n[d];
    typename itk::Image<T, 3>::RegionType region;
    region.SetSize(size);
    img->SetRegions(region);
    img->SetSpacing(sp);
    img->SetOrigin(org);
    img->Allocate();
    size_t nv = (size_t)n[0] * n[1] * n[2];
    FILE *f = std::fopen(path, "rb");
    if (!f || std::fread(img->GetBufferPointer(), sizeof(T), nv, f) != nv) {
        std::fprintf(stderr, "cannot read %s\n", path);
        std::exit(2);
    }
    std::fclose(f);
    return img;
}

static int g_iters[8];
static int g_level = -1;
static const double kMaxStep[3] = {2.0, 1.0, 0.5};
static double g_min_step = 1e-4;

class LevelObserver : public itk::Command
{
  public:
    using Self = LevelObserver;
    using Pointer = itk::SmartPointer<Self>;
    itkNewMacro(LevelObserver);
    std::string mode;
    void Execute(itk::Object *caller, const itk::EventObject &event) override
    {
        Execute((const itk::Object *)caller, event);
    }
    void Execute(const itk::Object *caller, const itk::EventObject &event) override
    {
        auto *reg = dynamic_cast<RegType *>(const_cast<itk::Object *>(caller));
        if (!reg || !itk::MultiResolutionIterationEvent().CheckEvent(&event))
            return;
        g_level = (int)reg->GetCurrentLevel();
        int shrink = 1 << (2 - g_level);
        if (mode == "rsgd") {
            auto *o = dynamic_cast<RSGD *>(reg->GetModifiableOptimizer());
            o->SetMaximumStepSizeInPhysicalUnits(kMaxStep[g_level]);
            o->SetLearningRate(kMaxStep[g_level]);
            o->SetMinimumStepLength(g_min_step * shrink);
        } else {
            auto *o = dynamic_cast<GD *>(reg->GetModifiableOptimizer());
            o->SetMaximumStepSizeInPhysicalUnits(kMaxStep[g_level]);
        }
    }
};

class IterObserver : public itk::Command
{
  public:
    using Self = IterObserver;
    using Pointer = itk::SmartPointer<Self>;
    itkNewMacro(IterObserver);
    void Execute(itk::Object *caller, const itk::EventObject &event) override
    {
        Execute((const itk::Object *)caller, event);
    }
    void Execute(const itk::Object *, const itk::EventObject &event) override
    {
        if (itk::IterationEvent().CheckEvent(&event) && g_level >= 0 && g_level < 8)
            g_iters[g_level]++;
    }
};

int main(int argc, char **argv)
{
    if (argc < 29) {
        std::fprintf(stderr, "usage: see the header of itk_register.cxx\n");
        return 2;
    }
    std::string mode = argv[1];
    if (getenv("ITK_MIN_STEP")) /* for tuning the reference */
        g_min_step = atof(getenv("ITK_MIN_STEP"));
    auto fixed = load<float>(argv[2], argv + 3);
    auto maskimg = load<unsigned char>(argv[12], argv + 3);
    auto moving = load<float>(argv[13], argv + 14);
    double c[3] = {atof(argv[23]), atof(argv[24]), atof(argv[25])};
    int threads = atoi(argv[26]);
    itk::MultiThreaderBase::SetGlobalDefaultNumberOfThreads(threads);
    itk::MultiThreaderBase::SetGlobalMaximumNumberOfThreads(threads);

    auto mask = itk::ImageMaskSpatialObject<3>::New();
    mask->SetImage(maskimg);
    mask->Update();

    auto metric = MetricType::New();
    metric->SetNumberOfHistogramBins(32);
    metric->SetFixedImageMask(mask);

    auto t = TransformType::New();
    TransformType::InputPointType center;
    for (int d = 0; d < 3; d++)
        center[d] = c[d];
    t->SetCenter(center);
    t->SetIdentity();
    t->SetCenter(center);

    auto reg = RegType::New();
    reg->SetFixedImage(fixed);
    reg->SetMovingImage(moving);
    reg->SetMetric(metric);
    reg->SetInitialTransform(t);
    reg->InPlaceOn();
    auto scales = ScalesType::New();
    scales->SetMetric(metric);
    if (mode == "rsgd") {
        auto o = RSGD::New();
        o->SetRelaxationFactor(0.5);
        o->SetNumberOfIterations(200);
        o->SetGradientMagnitudeTolerance(1e-8);
        o->SetScalesEstimator(scales);
        o->SetDoEstimateLearningRateAtEachIteration(true);
        o->SetDoEstimateLearningRateOnce(false);
        o->SetReturnBestParametersAndValue(false);
        reg->SetOptimizer(o);
        o->AddObserver(itk::IterationEvent(), IterObserver::New());
    } else {
        auto o = GD::New();
        o->SetLearningRate(1.0);
        o->SetNumberOfIterations(200);
        o->SetConvergenceWindowSize(10);
        o->SetMinimumConvergenceValue(1e-6);
        o->SetScalesEstimator(scales);
        o->SetDoEstimateLearningRateOnce(true);
        reg->SetOptimizer(o);
        o->AddObserver(itk::IterationEvent(), IterObserver::New());
    }
    RegType::ShrinkFactorsArrayType shrink(3);
    shrink[0] = 4;
    shrink[1] = 2;
    shrink[2] = 1;
    RegType::SmoothingSigmasArrayType sig(3);
    sig[0] = 2;
    sig[1] = 1;
    sig[2] = 0;
    reg->SetNumberOfLevels(3);
    reg->SetShrinkFactorsPerLevel(shrink);
    reg->SetSmoothingSigmasPerLevel(sig);
    reg->SmoothingSigmasAreSpecifiedInPhysicalUnitsOff();
    RegType::MetricSamplingPercentageArrayType pct(3);
    for (int l = 0; l < 3; l++)
        pct[l] = atof(argv[27 + l]);
    reg->SetMetricSamplingStrategy(RegType::MetricSamplingStrategyEnum::RANDOM);
    reg->SetMetricSamplingPercentagePerLevel(pct);
    reg->MetricSamplingReinitializeSeed(121212);
    auto lo = LevelObserver::New();
    lo->mode = mode;
    reg->AddObserver(itk::MultiResolutionIterationEvent(), lo);

    auto t0 = std::chrono::steady_clock::now();
    try {
        reg->Update();
    } catch (itk::ExceptionObject &e) {
        std::fprintf(stderr, "ITK: %s\n", e.what());
        return 1;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto out = reg->GetModifiableTransform();
    auto M = out->GetMatrix();
    auto off = out->GetOffset();
    std::printf("{\"seconds\":%.4f,\"matrix\":[", secs);
    for (int r = 0; r < 3; r++)
        std::printf("[%.10g,%.10g,%.10g,%.10g],", M[r][0], M[r][1], M[r][2], off[r]);
    std::printf("[0,0,0,1]],\"iterations\":[%d,%d,%d],\"metric\":%.6f}\n", g_iters[0], g_iters[1],
                g_iters[2], metric->GetValue());
    return 0;
}
