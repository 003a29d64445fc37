module attributes {dit.model = {caption_channels = 1024 : i64, caption_tokens = 77 : i64, family = "microdit", guidance = "all_channels", in_channels = 4 : i64, latent_size = 32 : i64, learn_sigma = false, mask_ratio = 0.000000e+00 : f64, name = "microdit-xl/2", num_classes = 0 : i64, objective = "edm", out_channels = 4 : i64, patch_size = 2 : i64, sigma_data = 9.000000e-01 : f64, zero_state = {mask_token = array<i64: 1, 1, 16>}}} {
  func.func private @caption_refiner_block(%arg0: tensor<1x77x1024xf32>, %arg1: tensor<1024xf32>, %arg2: tensor<3072x1024xf32>, %arg3: tensor<1024x1024xf32>, %arg4: tensor<1024xf32>, %arg5: tensor<2816x1024xf32>, %arg6: tensor<2816x1024xf32>, %arg7: tensor<1024x2816xf32>) -> tensor<1x77x1024xf32> attributes {dit.block_kind = "caption_refiner"} {
    %0 = dit.layer_norm %arg0 weight %arg1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>, tensor<1024xf32>) -> tensor<1x77x1024xf32>
    %1 = dit.linear %0, %arg2 : (tensor<1x77x1024xf32>, tensor<3072x1024xf32>) -> tensor<1x77x3072xf32>
    %2:3 = dit.split %1 : (tensor<1x77x3072xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %3 = dit.layer_norm %2#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %4 = dit.layer_norm %2#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %5 = dit.attention %3, %4, %2#2 {num_heads = 16 : i64} : (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %6 = dit.linear %5, %arg3 : (tensor<1x77x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x77x1024xf32>
    %7 = dit.add %arg0, %6 : (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %8 = dit.layer_norm %7 weight %arg4 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>, tensor<1024xf32>) -> tensor<1x77x1024xf32>
    %9 = dit.swiglu %8, %arg5 up %arg6 down %arg7 : (tensor<1x77x1024xf32>, tensor<2816x1024xf32>, tensor<2816x1024xf32>, tensor<1024x2816xf32>) -> tensor<1x77x1024xf32>
    %10 = dit.add %7, %9 : (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    return %10 : tensor<1x77x1024xf32>
  }
  func.func private @microdit_mixer_dense_block(%arg0: tensor<1x256x768xf32>, %arg1: tensor<1x77x768xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<4608x1024xf32>, %arg4: tensor<4608xf32>, %arg5: tensor<768xf32>, %arg6: tensor<2304x768xf32>, %arg7: tensor<768x768xf32>, %arg8: tensor<768xf32>, %arg9: tensor<768x768xf32>, %arg10: tensor<1536x768xf32>, %arg11: tensor<768x768xf32>, %arg12: tensor<768xf32>, %arg13: tensor<2048x768xf32>, %arg14: tensor<2048x768xf32>, %arg15: tensor<768x2048xf32>) -> tensor<1x256x768xf32> attributes {dit.block_kind = "microdit_mixer_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<4608x1024xf32>, tensor<4608xf32>) -> tensor<1x4608xf32>
    %2:6 = dit.split %1 : (tensor<1x4608xf32>) -> (tensor<1x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>, tensor<768xf32>) -> tensor<1x256x768xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>) -> tensor<1x256x768xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x768xf32>, tensor<2304x768xf32>) -> tensor<1x256x2304xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2304xf32>) -> (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x768xf32>, tensor<768x768xf32>) -> tensor<1x256x768xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x768xf32>, tensor<1x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>, tensor<768xf32>) -> tensor<1x256x768xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x768xf32>, tensor<768x768xf32>) -> tensor<1x256x768xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x768xf32>, tensor<1536x768xf32>) -> tensor<1x77x1536xf32>
    %16:2 = dit.split %15 : (tensor<1x77x1536xf32>) -> (tensor<1x77x768xf32>, tensor<1x77x768xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x768xf32>) -> tensor<1x77x768xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x77x768xf32>, tensor<1x77x768xf32>) -> tensor<1x256x768xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x768xf32>, tensor<768x768xf32>) -> tensor<1x256x768xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>, tensor<768xf32>) -> tensor<1x256x768xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>) -> tensor<1x256x768xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x768xf32>, tensor<2048x768xf32>, tensor<2048x768xf32>, tensor<768x2048xf32>) -> tensor<1x256x768xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x768xf32>, tensor<1x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    return %24 : tensor<1x256x768xf32>
  }
  func.func private @microdit_mixer_moe_block(%arg0: tensor<1x256x768xf32>, %arg1: tensor<1x77x768xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<4608x1024xf32>, %arg4: tensor<4608xf32>, %arg5: tensor<768xf32>, %arg6: tensor<2304x768xf32>, %arg7: tensor<768x768xf32>, %arg8: tensor<768xf32>, %arg9: tensor<768x768xf32>, %arg10: tensor<1536x768xf32>, %arg11: tensor<768x768xf32>, %arg12: tensor<768xf32>, %arg13: tensor<8x768xf32>, %arg14: tensor<8x768x3072xf32>, %arg15: tensor<8x3072x768xf32>) -> tensor<1x256x768xf32> attributes {dit.block_kind = "microdit_mixer_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<4608x1024xf32>, tensor<4608xf32>) -> tensor<1x4608xf32>
    %2:6 = dit.split %1 : (tensor<1x4608xf32>) -> (tensor<1x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>, tensor<768xf32>) -> tensor<1x256x768xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>) -> tensor<1x256x768xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x768xf32>, tensor<2304x768xf32>) -> tensor<1x256x2304xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2304xf32>) -> (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x768xf32>, tensor<768x768xf32>) -> tensor<1x256x768xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x768xf32>, tensor<1x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>, tensor<768xf32>) -> tensor<1x256x768xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x768xf32>, tensor<768x768xf32>) -> tensor<1x256x768xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x768xf32>, tensor<1536x768xf32>) -> tensor<1x77x1536xf32>
    %16:2 = dit.split %15 : (tensor<1x77x1536xf32>) -> (tensor<1x77x768xf32>, tensor<1x77x768xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x768xf32>) -> tensor<1x77x768xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x77x768xf32>, tensor<1x77x768xf32>) -> tensor<1x256x768xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x768xf32>, tensor<768x768xf32>) -> tensor<1x256x768xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>, tensor<768xf32>) -> tensor<1x256x768xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x768xf32>, tensor<1x768xf32>, tensor<1x768xf32>) -> tensor<1x256x768xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x768xf32>, tensor<8x768xf32>, tensor<8x768x3072xf32>, tensor<8x3072x768xf32>) -> tensor<1x256x768xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x768xf32>, tensor<1x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    return %24 : tensor<1x256x768xf32>
  }
  func.func private @microdit_dense_block(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<1536x1024xf32>, %arg7: tensor<1024x512xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<512x1024xf32>, %arg14: tensor<512x1024xf32>, %arg15: tensor<1024x512xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<1536x1024xf32>) -> tensor<1x256x1536xf32>
    %6:3 = dit.split %5 : (tensor<1x256x1536xf32>) -> (tensor<1x256x512xf32>, tensor<1x256x512xf32>, tensor<1x256x512xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x512xf32>) -> tensor<1x256x512xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x512xf32>) -> tensor<1x256x512xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 8 : i64} : (tensor<1x256x512xf32>, tensor<1x256x512xf32>, tensor<1x256x512xf32>) -> tensor<1x256x512xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x512xf32>, tensor<1024x512xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<512x1024xf32>, tensor<512x1024xf32>, tensor<1024x512xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<1920x1024xf32>, %arg7: tensor<1024x640xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x768xf32>, %arg15: tensor<8x768x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<1920x1024xf32>) -> tensor<1x256x1920xf32>
    %6:3 = dit.split %5 : (tensor<1x256x1920xf32>) -> (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 10 : i64} : (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x640xf32>, tensor<1024x640xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x768xf32>, tensor<8x768x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_1(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<1920x1024xf32>, %arg7: tensor<1024x640xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<768x1024xf32>, %arg14: tensor<768x1024xf32>, %arg15: tensor<1024x768xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<1920x1024xf32>) -> tensor<1x256x1920xf32>
    %6:3 = dit.split %5 : (tensor<1x256x1920xf32>) -> (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 10 : i64} : (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x640xf32>, tensor<1024x640xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<768x1024xf32>, tensor<768x1024xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_1(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<1920x1024xf32>, %arg7: tensor<1024x640xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x1024xf32>, %arg15: tensor<8x1024x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<1920x1024xf32>) -> tensor<1x256x1920xf32>
    %6:3 = dit.split %5 : (tensor<1x256x1920xf32>) -> (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 10 : i64} : (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x640xf32>, tensor<1024x640xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x1024xf32>, tensor<8x1024x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_2(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<1920x1024xf32>, %arg7: tensor<1024x640xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x1280xf32>, %arg15: tensor<8x1280x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<1920x1024xf32>) -> tensor<1x256x1920xf32>
    %6:3 = dit.split %5 : (tensor<1x256x1920xf32>) -> (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 10 : i64} : (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x640xf32>, tensor<1024x640xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x1280xf32>, tensor<8x1280x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_2(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<1920x1024xf32>, %arg7: tensor<1024x640xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<1024x1024xf32>, %arg14: tensor<1024x1024xf32>, %arg15: tensor<1024x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<1920x1024xf32>) -> tensor<1x256x1920xf32>
    %6:3 = dit.split %5 : (tensor<1x256x1920xf32>) -> (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 10 : i64} : (tensor<1x256x640xf32>, tensor<1x256x640xf32>, tensor<1x256x640xf32>) -> tensor<1x256x640xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x640xf32>, tensor<1024x640xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>, tensor<1024x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_3(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2304x1024xf32>, %arg7: tensor<1024x768xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x1536xf32>, %arg15: tensor<8x1536x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2304x1024xf32>) -> tensor<1x256x2304xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2304xf32>) -> (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x768xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x1536xf32>, tensor<8x1536x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_3(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2304x1024xf32>, %arg7: tensor<1024x768xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<1280x1024xf32>, %arg14: tensor<1280x1024xf32>, %arg15: tensor<1024x1280xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2304x1024xf32>) -> tensor<1x256x2304xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2304xf32>) -> (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x768xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<1280x1024xf32>, tensor<1280x1024xf32>, tensor<1024x1280xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_4(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2304x1024xf32>, %arg7: tensor<1024x768xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x1792xf32>, %arg15: tensor<8x1792x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2304x1024xf32>) -> tensor<1x256x2304xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2304xf32>) -> (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x768xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x1792xf32>, tensor<8x1792x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_5(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2304x1024xf32>, %arg7: tensor<1024x768xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x2048xf32>, %arg15: tensor<8x2048x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2304x1024xf32>) -> tensor<1x256x2304xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2304xf32>) -> (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x768xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x2048xf32>, tensor<8x2048x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_4(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2304x1024xf32>, %arg7: tensor<1024x768xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<1536x1024xf32>, %arg14: tensor<1536x1024xf32>, %arg15: tensor<1024x1536xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2304x1024xf32>) -> tensor<1x256x2304xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2304xf32>) -> (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x768xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<1536x1024xf32>, tensor<1536x1024xf32>, tensor<1024x1536xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_6(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2304x1024xf32>, %arg7: tensor<1024x768xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x2304xf32>, %arg15: tensor<8x2304x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2304x1024xf32>) -> tensor<1x256x2304xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2304xf32>) -> (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 12 : i64} : (tensor<1x256x768xf32>, tensor<1x256x768xf32>, tensor<1x256x768xf32>) -> tensor<1x256x768xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x768xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x2304xf32>, tensor<8x2304x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_5(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2688x1024xf32>, %arg7: tensor<1024x896xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<1792x1024xf32>, %arg14: tensor<1792x1024xf32>, %arg15: tensor<1024x1792xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2688x1024xf32>) -> tensor<1x256x2688xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2688xf32>) -> (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 14 : i64} : (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x896xf32>, tensor<1024x896xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<1792x1024xf32>, tensor<1792x1024xf32>, tensor<1024x1792xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_7(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2688x1024xf32>, %arg7: tensor<1024x896xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x2560xf32>, %arg15: tensor<8x2560x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2688x1024xf32>) -> tensor<1x256x2688xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2688xf32>) -> (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 14 : i64} : (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x896xf32>, tensor<1024x896xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x2560xf32>, tensor<8x2560x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_8(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2688x1024xf32>, %arg7: tensor<1024x896xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x2816xf32>, %arg15: tensor<8x2816x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2688x1024xf32>) -> tensor<1x256x2688xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2688xf32>) -> (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 14 : i64} : (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x896xf32>, tensor<1024x896xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x2816xf32>, tensor<8x2816x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_6(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2688x1024xf32>, %arg7: tensor<1024x896xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<2048x1024xf32>, %arg14: tensor<2048x1024xf32>, %arg15: tensor<1024x2048xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2688x1024xf32>) -> tensor<1x256x2688xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2688xf32>) -> (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 14 : i64} : (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x896xf32>, tensor<1024x896xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<2048x1024xf32>, tensor<2048x1024xf32>, tensor<1024x2048xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_9(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2688x1024xf32>, %arg7: tensor<1024x896xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x3072xf32>, %arg15: tensor<8x3072x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2688x1024xf32>) -> tensor<1x256x2688xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2688xf32>) -> (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 14 : i64} : (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x896xf32>, tensor<1024x896xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x3072xf32>, tensor<8x3072x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_7(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<2688x1024xf32>, %arg7: tensor<1024x896xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<2304x1024xf32>, %arg14: tensor<2304x1024xf32>, %arg15: tensor<1024x2304xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<2688x1024xf32>) -> tensor<1x256x2688xf32>
    %6:3 = dit.split %5 : (tensor<1x256x2688xf32>) -> (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 14 : i64} : (tensor<1x256x896xf32>, tensor<1x256x896xf32>, tensor<1x256x896xf32>) -> tensor<1x256x896xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x896xf32>, tensor<1024x896xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<2304x1024xf32>, tensor<2304x1024xf32>, tensor<1024x2304xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_10(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<3072x1024xf32>, %arg7: tensor<1024x1024xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x3328xf32>, %arg15: tensor<8x3328x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<3072x1024xf32>) -> tensor<1x256x3072xf32>
    %6:3 = dit.split %5 : (tensor<1x256x3072xf32>) -> (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x3328xf32>, tensor<8x3328x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_8(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<3072x1024xf32>, %arg7: tensor<1024x1024xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<2304x1024xf32>, %arg14: tensor<2304x1024xf32>, %arg15: tensor<1024x2304xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<3072x1024xf32>) -> tensor<1x256x3072xf32>
    %6:3 = dit.split %5 : (tensor<1x256x3072xf32>) -> (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<2304x1024xf32>, tensor<2304x1024xf32>, tensor<1024x2304xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_11(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<3072x1024xf32>, %arg7: tensor<1024x1024xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x3584xf32>, %arg15: tensor<8x3584x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<3072x1024xf32>) -> tensor<1x256x3072xf32>
    %6:3 = dit.split %5 : (tensor<1x256x3072xf32>) -> (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x3584xf32>, tensor<8x3584x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_9(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<3072x1024xf32>, %arg7: tensor<1024x1024xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<2560x1024xf32>, %arg14: tensor<2560x1024xf32>, %arg15: tensor<1024x2560xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<3072x1024xf32>) -> tensor<1x256x3072xf32>
    %6:3 = dit.split %5 : (tensor<1x256x3072xf32>) -> (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<2560x1024xf32>, tensor<2560x1024xf32>, tensor<1024x2560xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_moe_block_12(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<3072x1024xf32>, %arg7: tensor<1024x1024xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<8x1024xf32>, %arg14: tensor<8x1024x3840xf32>, %arg15: tensor<8x3840x1024xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_moe"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<3072x1024xf32>) -> tensor<1x256x3072xf32>
    %6:3 = dit.split %5 : (tensor<1x256x3072xf32>) -> (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.moe %22, %arg13, %arg14, %arg15 {activation = #dit.activation<gelu>, routing = #dit.expert_choice<capacity = 2.000000e+00>, weight_layout = #dit.weight_layout<in_out>} : (tensor<1x256x1024xf32>, tensor<8x1024xf32>, tensor<8x1024x3840xf32>, tensor<8x3840x1024xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func private @microdit_dense_block_10(%arg0: tensor<1x256x1024xf32>, %arg1: tensor<1x77x1024xf32>, %arg2: tensor<1x1024xf32>, %arg3: tensor<6144x1024xf32>, %arg4: tensor<6144xf32>, %arg5: tensor<1024xf32>, %arg6: tensor<3072x1024xf32>, %arg7: tensor<1024x1024xf32>, %arg8: tensor<1024xf32>, %arg9: tensor<1024x1024xf32>, %arg10: tensor<2048x1024xf32>, %arg11: tensor<1024x1024xf32>, %arg12: tensor<1024xf32>, %arg13: tensor<2816x1024xf32>, %arg14: tensor<2816x1024xf32>, %arg15: tensor<1024x2816xf32>) -> tensor<1x256x1024xf32> attributes {dit.block_kind = "microdit_dense"} {
    %0 = dit.gelu %arg2 {approximate} : tensor<1x1024xf32>
    %1 = dit.linear %0, %arg3 bias %arg4 : (tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>) -> tensor<1x6144xf32>
    %2:6 = dit.split %1 : (tensor<1x6144xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>)
    %3 = dit.layer_norm %arg0 weight %arg5 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %4 = dit.modulate %3, %2#0, %2#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %5 = dit.linear %4, %arg6 : (tensor<1x256x1024xf32>, tensor<3072x1024xf32>) -> tensor<1x256x3072xf32>
    %6:3 = dit.split %5 : (tensor<1x256x3072xf32>) -> (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>)
    %7 = dit.layer_norm %6#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %8 = dit.layer_norm %6#1 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %9 = dit.attention %7, %8, %6#2 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %10 = dit.linear %9, %arg7 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %11 = dit.gated_residual %arg0, %2#2, %10 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %12 = dit.layer_norm %11 weight %arg8 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %13 = dit.linear %12, %arg9 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %14 = dit.layer_norm %13 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %15 = dit.linear %arg1, %arg10 : (tensor<1x77x1024xf32>, tensor<2048x1024xf32>) -> tensor<1x77x2048xf32>
    %16:2 = dit.split %15 : (tensor<1x77x2048xf32>) -> (tensor<1x77x1024xf32>, tensor<1x77x1024xf32>)
    %17 = dit.layer_norm %16#0 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>) -> tensor<1x77x1024xf32>
    %18 = dit.attention %14, %17, %16#1 {num_heads = 16 : i64} : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x77x1024xf32>) -> tensor<1x256x1024xf32>
    %19 = dit.linear %18, %arg11 : (tensor<1x256x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %20 = dit.add %11, %19 : (tensor<1x256x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    %21 = dit.layer_norm %20 weight %arg12 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %22 = dit.modulate %21, %2#3, %2#4 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %23 = dit.swiglu %22, %arg13 up %arg14 down %arg15 : (tensor<1x256x1024xf32>, tensor<2816x1024xf32>, tensor<2816x1024xf32>, tensor<1024x2816xf32>) -> tensor<1x256x1024xf32>
    %24 = dit.gated_residual %20, %2#5, %23 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x256x1024xf32>) -> tensor<1x256x1024xf32>
    return %24 : tensor<1x256x1024xf32>
  }
  func.func @forward(%arg0: tensor<1x4x32x32xf32> {dit.input = "x"}, %arg1: tensor<1xf32> {dit.input = "t"}, %arg2: tensor<1x77x1024xf32> {dit.input = "captions"}, %arg3: tensor<1024x4x2x2xf32> {dit.param = "x_embedder.proj.weight"}, %arg4: tensor<1024xf32> {dit.param = "x_embedder.proj.bias"}, %arg5: tensor<1024x512xf32> {dit.param = "t_embedder.mlp.0.weight"}, %arg6: tensor<1024xf32> {dit.param = "t_embedder.mlp.0.bias"}, %arg7: tensor<1024x1024xf32> {dit.param = "t_embedder.mlp.2.weight"}, %arg8: tensor<1024xf32> {dit.param = "t_embedder.mlp.2.bias"}, %arg9: tensor<1024x1024xf32> {dit.param = "y_embedder.y_proj.fc1.weight"}, %arg10: tensor<1024xf32> {dit.param = "y_embedder.y_proj.fc1.bias"}, %arg11: tensor<1024xf32> {dit.param = "y_embedder.y_proj.norm.weight"}, %arg12: tensor<1024x1024xf32> {dit.param = "y_embedder.y_proj.fc2.weight"}, %arg13: tensor<1024xf32> {dit.param = "y_embedder.y_proj.fc2.bias"}, %arg14: tensor<1024xf32> {dit.param = "y_emb_preprocess.norm1.weight"}, %arg15: tensor<3072x1024xf32> {dit.param = "y_emb_preprocess.attn.qkv.weight"}, %arg16: tensor<1024x1024xf32> {dit.param = "y_emb_preprocess.attn.proj.weight"}, %arg17: tensor<1024xf32> {dit.param = "y_emb_preprocess.norm2.weight"}, %arg18: tensor<2816x1024xf32> {dit.param = "y_emb_preprocess.mlp.w1.weight"}, %arg19: tensor<2816x1024xf32> {dit.param = "y_emb_preprocess.mlp.w2.weight"}, %arg20: tensor<1024x2816xf32> {dit.param = "y_emb_preprocess.mlp.w3.weight"}, %arg21: tensor<1024x1024xf32> {dit.param = "pooled_y_emb_process.fc1.weight"}, %arg22: tensor<1024xf32> {dit.param = "pooled_y_emb_process.fc1.bias"}, %arg23: tensor<1024xf32> {dit.param = "pooled_y_emb_process.norm.weight"}, %arg24: tensor<1024x1024xf32> {dit.param = "pooled_y_emb_process.fc2.weight"}, %arg25: tensor<1024xf32> {dit.param = "pooled_y_emb_process.fc2.bias"}, %arg26: tensor<1024xf32> {dit.param = "patch_mixer_map_xin.0.weight"}, %arg27: tensor<768x1024xf32> {dit.param = "patch_mixer_map_xin.1.weight"}, %arg28: tensor<1024xf32> {dit.param = "patch_mixer_map_y.0.weight"}, %arg29: tensor<768x1024xf32> {dit.param = "patch_mixer_map_y.1.weight"}, %arg30: tensor<4608x1024xf32> {dit.param = "patch_mixer.0.adaLN_modulation.1.weight"}, %arg31: tensor<4608xf32> {dit.param = "patch_mixer.0.adaLN_modulation.1.bias"}, %arg32: tensor<768xf32> {dit.param = "patch_mixer.0.norm1.weight"}, %arg33: tensor<2304x768xf32> {dit.param = "patch_mixer.0.attn.qkv.weight"}, %arg34: tensor<768x768xf32> {dit.param = "patch_mixer.0.attn.proj.weight"}, %arg35: tensor<768xf32> {dit.param = "patch_mixer.0.norm2.weight"}, %arg36: tensor<768x768xf32> {dit.param = "patch_mixer.0.cross_attn.q_linear.weight"}, %arg37: tensor<1536x768xf32> {dit.param = "patch_mixer.0.cross_attn.kv_linear.weight"}, %arg38: tensor<768x768xf32> {dit.param = "patch_mixer.0.cross_attn.proj.weight"}, %arg39: tensor<768xf32> {dit.param = "patch_mixer.0.norm3.weight"}, %arg40: tensor<2048x768xf32> {dit.param = "patch_mixer.0.mlp.w1.weight"}, %arg41: tensor<2048x768xf32> {dit.param = "patch_mixer.0.mlp.w2.weight"}, %arg42: tensor<768x2048xf32> {dit.param = "patch_mixer.0.mlp.w3.weight"}, %arg43: tensor<4608x1024xf32> {dit.param = "patch_mixer.1.adaLN_modulation.1.weight"}, %arg44: tensor<4608xf32> {dit.param = "patch_mixer.1.adaLN_modulation.1.bias"}, %arg45: tensor<768xf32> {dit.param = "patch_mixer.1.norm1.weight"}, %arg46: tensor<2304x768xf32> {dit.param = "patch_mixer.1.attn.qkv.weight"}, %arg47: tensor<768x768xf32> {dit.param = "patch_mixer.1.attn.proj.weight"}, %arg48: tensor<768xf32> {dit.param = "patch_mixer.1.norm2.weight"}, %arg49: tensor<768x768xf32> {dit.param = "patch_mixer.1.cross_attn.q_linear.weight"}, %arg50: tensor<1536x768xf32> {dit.param = "patch_mixer.1.cross_attn.kv_linear.weight"}, %arg51: tensor<768x768xf32> {dit.param = "patch_mixer.1.cross_attn.proj.weight"}, %arg52: tensor<768xf32> {dit.param = "patch_mixer.1.norm3.weight"}, %arg53: tensor<8x768xf32> {dit.param = "patch_mixer.1.mlp.gate.weight"}, %arg54: tensor<8x768x3072xf32> {dit.param = "patch_mixer.1.mlp.w1"}, %arg55: tensor<8x3072x768xf32> {dit.param = "patch_mixer.1.mlp.w2"}, %arg56: tensor<4608x1024xf32> {dit.param = "patch_mixer.2.adaLN_modulation.1.weight"}, %arg57: tensor<4608xf32> {dit.param = "patch_mixer.2.adaLN_modulation.1.bias"}, %arg58: tensor<768xf32> {dit.param = "patch_mixer.2.norm1.weight"}, %arg59: tensor<2304x768xf32> {dit.param = "patch_mixer.2.attn.qkv.weight"}, %arg60: tensor<768x768xf32> {dit.param = "patch_mixer.2.attn.proj.weight"}, %arg61: tensor<768xf32> {dit.param = "patch_mixer.2.norm2.weight"}, %arg62: tensor<768x768xf32> {dit.param = "patch_mixer.2.cross_attn.q_linear.weight"}, %arg63: tensor<1536x768xf32> {dit.param = "patch_mixer.2.cross_attn.kv_linear.weight"}, %arg64: tensor<768x768xf32> {dit.param = "patch_mixer.2.cross_attn.proj.weight"}, %arg65: tensor<768xf32> {dit.param = "patch_mixer.2.norm3.weight"}, %arg66: tensor<2048x768xf32> {dit.param = "patch_mixer.2.mlp.w1.weight"}, %arg67: tensor<2048x768xf32> {dit.param = "patch_mixer.2.mlp.w2.weight"}, %arg68: tensor<768x2048xf32> {dit.param = "patch_mixer.2.mlp.w3.weight"}, %arg69: tensor<4608x1024xf32> {dit.param = "patch_mixer.3.adaLN_modulation.1.weight"}, %arg70: tensor<4608xf32> {dit.param = "patch_mixer.3.adaLN_modulation.1.bias"}, %arg71: tensor<768xf32> {dit.param = "patch_mixer.3.norm1.weight"}, %arg72: tensor<2304x768xf32> {dit.param = "patch_mixer.3.attn.qkv.weight"}, %arg73: tensor<768x768xf32> {dit.param = "patch_mixer.3.attn.proj.weight"}, %arg74: tensor<768xf32> {dit.param = "patch_mixer.3.norm2.weight"}, %arg75: tensor<768x768xf32> {dit.param = "patch_mixer.3.cross_attn.q_linear.weight"}, %arg76: tensor<1536x768xf32> {dit.param = "patch_mixer.3.cross_attn.kv_linear.weight"}, %arg77: tensor<768x768xf32> {dit.param = "patch_mixer.3.cross_attn.proj.weight"}, %arg78: tensor<768xf32> {dit.param = "patch_mixer.3.norm3.weight"}, %arg79: tensor<8x768xf32> {dit.param = "patch_mixer.3.mlp.gate.weight"}, %arg80: tensor<8x768x3072xf32> {dit.param = "patch_mixer.3.mlp.w1"}, %arg81: tensor<8x3072x768xf32> {dit.param = "patch_mixer.3.mlp.w2"}, %arg82: tensor<4608x1024xf32> {dit.param = "patch_mixer.4.adaLN_modulation.1.weight"}, %arg83: tensor<4608xf32> {dit.param = "patch_mixer.4.adaLN_modulation.1.bias"}, %arg84: tensor<768xf32> {dit.param = "patch_mixer.4.norm1.weight"}, %arg85: tensor<2304x768xf32> {dit.param = "patch_mixer.4.attn.qkv.weight"}, %arg86: tensor<768x768xf32> {dit.param = "patch_mixer.4.attn.proj.weight"}, %arg87: tensor<768xf32> {dit.param = "patch_mixer.4.norm2.weight"}, %arg88: tensor<768x768xf32> {dit.param = "patch_mixer.4.cross_attn.q_linear.weight"}, %arg89: tensor<1536x768xf32> {dit.param = "patch_mixer.4.cross_attn.kv_linear.weight"}, %arg90: tensor<768x768xf32> {dit.param = "patch_mixer.4.cross_attn.proj.weight"}, %arg91: tensor<768xf32> {dit.param = "patch_mixer.4.norm3.weight"}, %arg92: tensor<2048x768xf32> {dit.param = "patch_mixer.4.mlp.w1.weight"}, %arg93: tensor<2048x768xf32> {dit.param = "patch_mixer.4.mlp.w2.weight"}, %arg94: tensor<768x2048xf32> {dit.param = "patch_mixer.4.mlp.w3.weight"}, %arg95: tensor<4608x1024xf32> {dit.param = "patch_mixer.5.adaLN_modulation.1.weight"}, %arg96: tensor<4608xf32> {dit.param = "patch_mixer.5.adaLN_modulation.1.bias"}, %arg97: tensor<768xf32> {dit.param = "patch_mixer.5.norm1.weight"}, %arg98: tensor<2304x768xf32> {dit.param = "patch_mixer.5.attn.qkv.weight"}, %arg99: tensor<768x768xf32> {dit.param = "patch_mixer.5.attn.proj.weight"}, %arg100: tensor<768xf32> {dit.param = "patch_mixer.5.norm2.weight"}, %arg101: tensor<768x768xf32> {dit.param = "patch_mixer.5.cross_attn.q_linear.weight"}, %arg102: tensor<1536x768xf32> {dit.param = "patch_mixer.5.cross_attn.kv_linear.weight"}, %arg103: tensor<768x768xf32> {dit.param = "patch_mixer.5.cross_attn.proj.weight"}, %arg104: tensor<768xf32> {dit.param = "patch_mixer.5.norm3.weight"}, %arg105: tensor<8x768xf32> {dit.param = "patch_mixer.5.mlp.gate.weight"}, %arg106: tensor<8x768x3072xf32> {dit.param = "patch_mixer.5.mlp.w1"}, %arg107: tensor<8x3072x768xf32> {dit.param = "patch_mixer.5.mlp.w2"}, %arg108: tensor<768xf32> {dit.param = "patch_mixer_map_xout.0.weight"}, %arg109: tensor<1024x768xf32> {dit.param = "patch_mixer_map_xout.1.weight"}, %arg110: tensor<6144x1024xf32> {dit.param = "blocks.0.adaLN_modulation.1.weight"}, %arg111: tensor<6144xf32> {dit.param = "blocks.0.adaLN_modulation.1.bias"}, %arg112: tensor<1024xf32> {dit.param = "blocks.0.norm1.weight"}, %arg113: tensor<1536x1024xf32> {dit.param = "blocks.0.attn.qkv.weight"}, %arg114: tensor<1024x512xf32> {dit.param = "blocks.0.attn.proj.weight"}, %arg115: tensor<1024xf32> {dit.param = "blocks.0.norm2.weight"}, %arg116: tensor<1024x1024xf32> {dit.param = "blocks.0.cross_attn.q_linear.weight"}, %arg117: tensor<2048x1024xf32> {dit.param = "blocks.0.cross_attn.kv_linear.weight"}, %arg118: tensor<1024x1024xf32> {dit.param = "blocks.0.cross_attn.proj.weight"}, %arg119: tensor<1024xf32> {dit.param = "blocks.0.norm3.weight"}, %arg120: tensor<512x1024xf32> {dit.param = "blocks.0.mlp.w1.weight"}, %arg121: tensor<512x1024xf32> {dit.param = "blocks.0.mlp.w2.weight"}, %arg122: tensor<1024x512xf32> {dit.param = "blocks.0.mlp.w3.weight"}, %arg123: tensor<6144x1024xf32> {dit.param = "blocks.1.adaLN_modulation.1.weight"}, %arg124: tensor<6144xf32> {dit.param = "blocks.1.adaLN_modulation.1.bias"}, %arg125: tensor<1024xf32> {dit.param = "blocks.1.norm1.weight"}, %arg126: tensor<1920x1024xf32> {dit.param = "blocks.1.attn.qkv.weight"}, %arg127: tensor<1024x640xf32> {dit.param = "blocks.1.attn.proj.weight"}, %arg128: tensor<1024xf32> {dit.param = "blocks.1.norm2.weight"}, %arg129: tensor<1024x1024xf32> {dit.param = "blocks.1.cross_attn.q_linear.weight"}, %arg130: tensor<2048x1024xf32> {dit.param = "blocks.1.cross_attn.kv_linear.weight"}, %arg131: tensor<1024x1024xf32> {dit.param = "blocks.1.cross_attn.proj.weight"}, %arg132: tensor<1024xf32> {dit.param = "blocks.1.norm3.weight"}, %arg133: tensor<8x1024xf32> {dit.param = "blocks.1.mlp.gate.weight"}, %arg134: tensor<8x1024x768xf32> {dit.param = "blocks.1.mlp.w1"}, %arg135: tensor<8x768x1024xf32> {dit.param = "blocks.1.mlp.w2"}, %arg136: tensor<6144x1024xf32> {dit.param = "blocks.2.adaLN_modulation.1.weight"}, %arg137: tensor<6144xf32> {dit.param = "blocks.2.adaLN_modulation.1.bias"}, %arg138: tensor<1024xf32> {dit.param = "blocks.2.norm1.weight"}, %arg139: tensor<1920x1024xf32> {dit.param = "blocks.2.attn.qkv.weight"}, %arg140: tensor<1024x640xf32> {dit.param = "blocks.2.attn.proj.weight"}, %arg141: tensor<1024xf32> {dit.param = "blocks.2.norm2.weight"}, %arg142: tensor<1024x1024xf32> {dit.param = "blocks.2.cross_attn.q_linear.weight"}, %arg143: tensor<2048x1024xf32> {dit.param = "blocks.2.cross_attn.kv_linear.weight"}, %arg144: tensor<1024x1024xf32> {dit.param = "blocks.2.cross_attn.proj.weight"}, %arg145: tensor<1024xf32> {dit.param = "blocks.2.norm3.weight"}, %arg146: tensor<768x1024xf32> {dit.param = "blocks.2.mlp.w1.weight"}, %arg147: tensor<768x1024xf32> {dit.param = "blocks.2.mlp.w2.weight"}, %arg148: tensor<1024x768xf32> {dit.param = "blocks.2.mlp.w3.weight"}, %arg149: tensor<6144x1024xf32> {dit.param = "blocks.3.adaLN_modulation.1.weight"}, %arg150: tensor<6144xf32> {dit.param = "blocks.3.adaLN_modulation.1.bias"}, %arg151: tensor<1024xf32> {dit.param = "blocks.3.norm1.weight"}, %arg152: tensor<1920x1024xf32> {dit.param = "blocks.3.attn.qkv.weight"}, %arg153: tensor<1024x640xf32> {dit.param = "blocks.3.attn.proj.weight"}, %arg154: tensor<1024xf32> {dit.param = "blocks.3.norm2.weight"}, %arg155: tensor<1024x1024xf32> {dit.param = "blocks.3.cross_attn.q_linear.weight"}, %arg156: tensor<2048x1024xf32> {dit.param = "blocks.3.cross_attn.kv_linear.weight"}, %arg157: tensor<1024x1024xf32> {dit.param = "blocks.3.cross_attn.proj.weight"}, %arg158: tensor<1024xf32> {dit.param = "blocks.3.norm3.weight"}, %arg159: tensor<8x1024xf32> {dit.param = "blocks.3.mlp.gate.weight"}, %arg160: tensor<8x1024x1024xf32> {dit.param = "blocks.3.mlp.w1"}, %arg161: tensor<8x1024x1024xf32> {dit.param = "blocks.3.mlp.w2"}, %arg162: tensor<6144x1024xf32> {dit.param = "blocks.4.adaLN_modulation.1.weight"}, %arg163: tensor<6144xf32> {dit.param = "blocks.4.adaLN_modulation.1.bias"}, %arg164: tensor<1024xf32> {dit.param = "blocks.4.norm1.weight"}, %arg165: tensor<1920x1024xf32> {dit.param = "blocks.4.attn.qkv.weight"}, %arg166: tensor<1024x640xf32> {dit.param = "blocks.4.attn.proj.weight"}, %arg167: tensor<1024xf32> {dit.param = "blocks.4.norm2.weight"}, %arg168: tensor<1024x1024xf32> {dit.param = "blocks.4.cross_attn.q_linear.weight"}, %arg169: tensor<2048x1024xf32> {dit.param = "blocks.4.cross_attn.kv_linear.weight"}, %arg170: tensor<1024x1024xf32> {dit.param = "blocks.4.cross_attn.proj.weight"}, %arg171: tensor<1024xf32> {dit.param = "blocks.4.norm3.weight"}, %arg172: tensor<768x1024xf32> {dit.param = "blocks.4.mlp.w1.weight"}, %arg173: tensor<768x1024xf32> {dit.param = "blocks.4.mlp.w2.weight"}, %arg174: tensor<1024x768xf32> {dit.param = "blocks.4.mlp.w3.weight"}, %arg175: tensor<6144x1024xf32> {dit.param = "blocks.5.adaLN_modulation.1.weight"}, %arg176: tensor<6144xf32> {dit.param = "blocks.5.adaLN_modulation.1.bias"}, %arg177: tensor<1024xf32> {dit.param = "blocks.5.norm1.weight"}, %arg178: tensor<1920x1024xf32> {dit.param = "blocks.5.attn.qkv.weight"}, %arg179: tensor<1024x640xf32> {dit.param = "blocks.5.attn.proj.weight"}, %arg180: tensor<1024xf32> {dit.param = "blocks.5.norm2.weight"}, %arg181: tensor<1024x1024xf32> {dit.param = "blocks.5.cross_attn.q_linear.weight"}, %arg182: tensor<2048x1024xf32> {dit.param = "blocks.5.cross_attn.kv_linear.weight"}, %arg183: tensor<1024x1024xf32> {dit.param = "blocks.5.cross_attn.proj.weight"}, %arg184: tensor<1024xf32> {dit.param = "blocks.5.norm3.weight"}, %arg185: tensor<8x1024xf32> {dit.param = "blocks.5.mlp.gate.weight"}, %arg186: tensor<8x1024x1280xf32> {dit.param = "blocks.5.mlp.w1"}, %arg187: tensor<8x1280x1024xf32> {dit.param = "blocks.5.mlp.w2"}, %arg188: tensor<6144x1024xf32> {dit.param = "blocks.6.adaLN_modulation.1.weight"}, %arg189: tensor<6144xf32> {dit.param = "blocks.6.adaLN_modulation.1.bias"}, %arg190: tensor<1024xf32> {dit.param = "blocks.6.norm1.weight"}, %arg191: tensor<1920x1024xf32> {dit.param = "blocks.6.attn.qkv.weight"}, %arg192: tensor<1024x640xf32> {dit.param = "blocks.6.attn.proj.weight"}, %arg193: tensor<1024xf32> {dit.param = "blocks.6.norm2.weight"}, %arg194: tensor<1024x1024xf32> {dit.param = "blocks.6.cross_attn.q_linear.weight"}, %arg195: tensor<2048x1024xf32> {dit.param = "blocks.6.cross_attn.kv_linear.weight"}, %arg196: tensor<1024x1024xf32> {dit.param = "blocks.6.cross_attn.proj.weight"}, %arg197: tensor<1024xf32> {dit.param = "blocks.6.norm3.weight"}, %arg198: tensor<1024x1024xf32> {dit.param = "blocks.6.mlp.w1.weight"}, %arg199: tensor<1024x1024xf32> {dit.param = "blocks.6.mlp.w2.weight"}, %arg200: tensor<1024x1024xf32> {dit.param = "blocks.6.mlp.w3.weight"}, %arg201: tensor<6144x1024xf32> {dit.param = "blocks.7.adaLN_modulation.1.weight"}, %arg202: tensor<6144xf32> {dit.param = "blocks.7.adaLN_modulation.1.bias"}, %arg203: tensor<1024xf32> {dit.param = "blocks.7.norm1.weight"}, %arg204: tensor<2304x1024xf32> {dit.param = "blocks.7.attn.qkv.weight"}, %arg205: tensor<1024x768xf32> {dit.param = "blocks.7.attn.proj.weight"}, %arg206: tensor<1024xf32> {dit.param = "blocks.7.norm2.weight"}, %arg207: tensor<1024x1024xf32> {dit.param = "blocks.7.cross_attn.q_linear.weight"}, %arg208: tensor<2048x1024xf32> {dit.param = "blocks.7.cross_attn.kv_linear.weight"}, %arg209: tensor<1024x1024xf32> {dit.param = "blocks.7.cross_attn.proj.weight"}, %arg210: tensor<1024xf32> {dit.param = "blocks.7.norm3.weight"}, %arg211: tensor<8x1024xf32> {dit.param = "blocks.7.mlp.gate.weight"}, %arg212: tensor<8x1024x1536xf32> {dit.param = "blocks.7.mlp.w1"}, %arg213: tensor<8x1536x1024xf32> {dit.param = "blocks.7.mlp.w2"}, %arg214: tensor<6144x1024xf32> {dit.param = "blocks.8.adaLN_modulation.1.weight"}, %arg215: tensor<6144xf32> {dit.param = "blocks.8.adaLN_modulation.1.bias"}, %arg216: tensor<1024xf32> {dit.param = "blocks.8.norm1.weight"}, %arg217: tensor<2304x1024xf32> {dit.param = "blocks.8.attn.qkv.weight"}, %arg218: tensor<1024x768xf32> {dit.param = "blocks.8.attn.proj.weight"}, %arg219: tensor<1024xf32> {dit.param = "blocks.8.norm2.weight"}, %arg220: tensor<1024x1024xf32> {dit.param = "blocks.8.cross_attn.q_linear.weight"}, %arg221: tensor<2048x1024xf32> {dit.param = "blocks.8.cross_attn.kv_linear.weight"}, %arg222: tensor<1024x1024xf32> {dit.param = "blocks.8.cross_attn.proj.weight"}, %arg223: tensor<1024xf32> {dit.param = "blocks.8.norm3.weight"}, %arg224: tensor<1280x1024xf32> {dit.param = "blocks.8.mlp.w1.weight"}, %arg225: tensor<1280x1024xf32> {dit.param = "blocks.8.mlp.w2.weight"}, %arg226: tensor<1024x1280xf32> {dit.param = "blocks.8.mlp.w3.weight"}, %arg227: tensor<6144x1024xf32> {dit.param = "blocks.9.adaLN_modulation.1.weight"}, %arg228: tensor<6144xf32> {dit.param = "blocks.9.adaLN_modulation.1.bias"}, %arg229: tensor<1024xf32> {dit.param = "blocks.9.norm1.weight"}, %arg230: tensor<2304x1024xf32> {dit.param = "blocks.9.attn.qkv.weight"}, %arg231: tensor<1024x768xf32> {dit.param = "blocks.9.attn.proj.weight"}, %arg232: tensor<1024xf32> {dit.param = "blocks.9.norm2.weight"}, %arg233: tensor<1024x1024xf32> {dit.param = "blocks.9.cross_attn.q_linear.weight"}, %arg234: tensor<2048x1024xf32> {dit.param = "blocks.9.cross_attn.kv_linear.weight"}, %arg235: tensor<1024x1024xf32> {dit.param = "blocks.9.cross_attn.proj.weight"}, %arg236: tensor<1024xf32> {dit.param = "blocks.9.norm3.weight"}, %arg237: tensor<8x1024xf32> {dit.param = "blocks.9.mlp.gate.weight"}, %arg238: tensor<8x1024x1792xf32> {dit.param = "blocks.9.mlp.w1"}, %arg239: tensor<8x1792x1024xf32> {dit.param = "blocks.9.mlp.w2"}, %arg240: tensor<6144x1024xf32> {dit.param = "blocks.10.adaLN_modulation.1.weight"}, %arg241: tensor<6144xf32> {dit.param = "blocks.10.adaLN_modulation.1.bias"}, %arg242: tensor<1024xf32> {dit.param = "blocks.10.norm1.weight"}, %arg243: tensor<2304x1024xf32> {dit.param = "blocks.10.attn.qkv.weight"}, %arg244: tensor<1024x768xf32> {dit.param = "blocks.10.attn.proj.weight"}, %arg245: tensor<1024xf32> {dit.param = "blocks.10.norm2.weight"}, %arg246: tensor<1024x1024xf32> {dit.param = "blocks.10.cross_attn.q_linear.weight"}, %arg247: tensor<2048x1024xf32> {dit.param = "blocks.10.cross_attn.kv_linear.weight"}, %arg248: tensor<1024x1024xf32> {dit.param = "blocks.10.cross_attn.proj.weight"}, %arg249: tensor<1024xf32> {dit.param = "blocks.10.norm3.weight"}, %arg250: tensor<1280x1024xf32> {dit.param = "blocks.10.mlp.w1.weight"}, %arg251: tensor<1280x1024xf32> {dit.param = "blocks.10.mlp.w2.weight"}, %arg252: tensor<1024x1280xf32> {dit.param = "blocks.10.mlp.w3.weight"}, %arg253: tensor<6144x1024xf32> {dit.param = "blocks.11.adaLN_modulation.1.weight"}, %arg254: tensor<6144xf32> {dit.param = "blocks.11.adaLN_modulation.1.bias"}, %arg255: tensor<1024xf32> {dit.param = "blocks.11.norm1.weight"}, %arg256: tensor<2304x1024xf32> {dit.param = "blocks.11.attn.qkv.weight"}, %arg257: tensor<1024x768xf32> {dit.param = "blocks.11.attn.proj.weight"}, %arg258: tensor<1024xf32> {dit.param = "blocks.11.norm2.weight"}, %arg259: tensor<1024x1024xf32> {dit.param = "blocks.11.cross_attn.q_linear.weight"}, %arg260: tensor<2048x1024xf32> {dit.param = "blocks.11.cross_attn.kv_linear.weight"}, %arg261: tensor<1024x1024xf32> {dit.param = "blocks.11.cross_attn.proj.weight"}, %arg262: tensor<1024xf32> {dit.param = "blocks.11.norm3.weight"}, %arg263: tensor<8x1024xf32> {dit.param = "blocks.11.mlp.gate.weight"}, %arg264: tensor<8x1024x2048xf32> {dit.param = "blocks.11.mlp.w1"}, %arg265: tensor<8x2048x1024xf32> {dit.param = "blocks.11.mlp.w2"}, %arg266: tensor<6144x1024xf32> {dit.param = "blocks.12.adaLN_modulation.1.weight"}, %arg267: tensor<6144xf32> {dit.param = "blocks.12.adaLN_modulation.1.bias"}, %arg268: tensor<1024xf32> {dit.param = "blocks.12.norm1.weight"}, %arg269: tensor<2304x1024xf32> {dit.param = "blocks.12.attn.qkv.weight"}, %arg270: tensor<1024x768xf32> {dit.param = "blocks.12.attn.proj.weight"}, %arg271: tensor<1024xf32> {dit.param = "blocks.12.norm2.weight"}, %arg272: tensor<1024x1024xf32> {dit.param = "blocks.12.cross_attn.q_linear.weight"}, %arg273: tensor<2048x1024xf32> {dit.param = "blocks.12.cross_attn.kv_linear.weight"}, %arg274: tensor<1024x1024xf32> {dit.param = "blocks.12.cross_attn.proj.weight"}, %arg275: tensor<1024xf32> {dit.param = "blocks.12.norm3.weight"}, %arg276: tensor<1536x1024xf32> {dit.param = "blocks.12.mlp.w1.weight"}, %arg277: tensor<1536x1024xf32> {dit.param = "blocks.12.mlp.w2.weight"}, %arg278: tensor<1024x1536xf32> {dit.param = "blocks.12.mlp.w3.weight"}, %arg279: tensor<6144x1024xf32> {dit.param = "blocks.13.adaLN_modulation.1.weight"}, %arg280: tensor<6144xf32> {dit.param = "blocks.13.adaLN_modulation.1.bias"}, %arg281: tensor<1024xf32> {dit.param = "blocks.13.norm1.weight"}, %arg282: tensor<2304x1024xf32> {dit.param = "blocks.13.attn.qkv.weight"}, %arg283: tensor<1024x768xf32> {dit.param = "blocks.13.attn.proj.weight"}, %arg284: tensor<1024xf32> {dit.param = "blocks.13.norm2.weight"}, %arg285: tensor<1024x1024xf32> {dit.param = "blocks.13.cross_attn.q_linear.weight"}, %arg286: tensor<2048x1024xf32> {dit.param = "blocks.13.cross_attn.kv_linear.weight"}, %arg287: tensor<1024x1024xf32> {dit.param = "blocks.13.cross_attn.proj.weight"}, %arg288: tensor<1024xf32> {dit.param = "blocks.13.norm3.weight"}, %arg289: tensor<8x1024xf32> {dit.param = "blocks.13.mlp.gate.weight"}, %arg290: tensor<8x1024x2304xf32> {dit.param = "blocks.13.mlp.w1"}, %arg291: tensor<8x2304x1024xf32> {dit.param = "blocks.13.mlp.w2"}, %arg292: tensor<6144x1024xf32> {dit.param = "blocks.14.adaLN_modulation.1.weight"}, %arg293: tensor<6144xf32> {dit.param = "blocks.14.adaLN_modulation.1.bias"}, %arg294: tensor<1024xf32> {dit.param = "blocks.14.norm1.weight"}, %arg295: tensor<2688x1024xf32> {dit.param = "blocks.14.attn.qkv.weight"}, %arg296: tensor<1024x896xf32> {dit.param = "blocks.14.attn.proj.weight"}, %arg297: tensor<1024xf32> {dit.param = "blocks.14.norm2.weight"}, %arg298: tensor<1024x1024xf32> {dit.param = "blocks.14.cross_attn.q_linear.weight"}, %arg299: tensor<2048x1024xf32> {dit.param = "blocks.14.cross_attn.kv_linear.weight"}, %arg300: tensor<1024x1024xf32> {dit.param = "blocks.14.cross_attn.proj.weight"}, %arg301: tensor<1024xf32> {dit.param = "blocks.14.norm3.weight"}, %arg302: tensor<1792x1024xf32> {dit.param = "blocks.14.mlp.w1.weight"}, %arg303: tensor<1792x1024xf32> {dit.param = "blocks.14.mlp.w2.weight"}, %arg304: tensor<1024x1792xf32> {dit.param = "blocks.14.mlp.w3.weight"}, %arg305: tensor<6144x1024xf32> {dit.param = "blocks.15.adaLN_modulation.1.weight"}, %arg306: tensor<6144xf32> {dit.param = "blocks.15.adaLN_modulation.1.bias"}, %arg307: tensor<1024xf32> {dit.param = "blocks.15.norm1.weight"}, %arg308: tensor<2688x1024xf32> {dit.param = "blocks.15.attn.qkv.weight"}, %arg309: tensor<1024x896xf32> {dit.param = "blocks.15.attn.proj.weight"}, %arg310: tensor<1024xf32> {dit.param = "blocks.15.norm2.weight"}, %arg311: tensor<1024x1024xf32> {dit.param = "blocks.15.cross_attn.q_linear.weight"}, %arg312: tensor<2048x1024xf32> {dit.param = "blocks.15.cross_attn.kv_linear.weight"}, %arg313: tensor<1024x1024xf32> {dit.param = "blocks.15.cross_attn.proj.weight"}, %arg314: tensor<1024xf32> {dit.param = "blocks.15.norm3.weight"}, %arg315: tensor<8x1024xf32> {dit.param = "blocks.15.mlp.gate.weight"}, %arg316: tensor<8x1024x2560xf32> {dit.param = "blocks.15.mlp.w1"}, %arg317: tensor<8x2560x1024xf32> {dit.param = "blocks.15.mlp.w2"}, %arg318: tensor<6144x1024xf32> {dit.param = "blocks.16.adaLN_modulation.1.weight"}, %arg319: tensor<6144xf32> {dit.param = "blocks.16.adaLN_modulation.1.bias"}, %arg320: tensor<1024xf32> {dit.param = "blocks.16.norm1.weight"}, %arg321: tensor<2688x1024xf32> {dit.param = "blocks.16.attn.qkv.weight"}, %arg322: tensor<1024x896xf32> {dit.param = "blocks.16.attn.proj.weight"}, %arg323: tensor<1024xf32> {dit.param = "blocks.16.norm2.weight"}, %arg324: tensor<1024x1024xf32> {dit.param = "blocks.16.cross_attn.q_linear.weight"}, %arg325: tensor<2048x1024xf32> {dit.param = "blocks.16.cross_attn.kv_linear.weight"}, %arg326: tensor<1024x1024xf32> {dit.param = "blocks.16.cross_attn.proj.weight"}, %arg327: tensor<1024xf32> {dit.param = "blocks.16.norm3.weight"}, %arg328: tensor<1792x1024xf32> {dit.param = "blocks.16.mlp.w1.weight"}, %arg329: tensor<1792x1024xf32> {dit.param = "blocks.16.mlp.w2.weight"}, %arg330: tensor<1024x1792xf32> {dit.param = "blocks.16.mlp.w3.weight"}, %arg331: tensor<6144x1024xf32> {dit.param = "blocks.17.adaLN_modulation.1.weight"}, %arg332: tensor<6144xf32> {dit.param = "blocks.17.adaLN_modulation.1.bias"}, %arg333: tensor<1024xf32> {dit.param = "blocks.17.norm1.weight"}, %arg334: tensor<2688x1024xf32> {dit.param = "blocks.17.attn.qkv.weight"}, %arg335: tensor<1024x896xf32> {dit.param = "blocks.17.attn.proj.weight"}, %arg336: tensor<1024xf32> {dit.param = "blocks.17.norm2.weight"}, %arg337: tensor<1024x1024xf32> {dit.param = "blocks.17.cross_attn.q_linear.weight"}, %arg338: tensor<2048x1024xf32> {dit.param = "blocks.17.cross_attn.kv_linear.weight"}, %arg339: tensor<1024x1024xf32> {dit.param = "blocks.17.cross_attn.proj.weight"}, %arg340: tensor<1024xf32> {dit.param = "blocks.17.norm3.weight"}, %arg341: tensor<8x1024xf32> {dit.param = "blocks.17.mlp.gate.weight"}, %arg342: tensor<8x1024x2816xf32> {dit.param = "blocks.17.mlp.w1"}, %arg343: tensor<8x2816x1024xf32> {dit.param = "blocks.17.mlp.w2"}, %arg344: tensor<6144x1024xf32> {dit.param = "blocks.18.adaLN_modulation.1.weight"}, %arg345: tensor<6144xf32> {dit.param = "blocks.18.adaLN_modulation.1.bias"}, %arg346: tensor<1024xf32> {dit.param = "blocks.18.norm1.weight"}, %arg347: tensor<2688x1024xf32> {dit.param = "blocks.18.attn.qkv.weight"}, %arg348: tensor<1024x896xf32> {dit.param = "blocks.18.attn.proj.weight"}, %arg349: tensor<1024xf32> {dit.param = "blocks.18.norm2.weight"}, %arg350: tensor<1024x1024xf32> {dit.param = "blocks.18.cross_attn.q_linear.weight"}, %arg351: tensor<2048x1024xf32> {dit.param = "blocks.18.cross_attn.kv_linear.weight"}, %arg352: tensor<1024x1024xf32> {dit.param = "blocks.18.cross_attn.proj.weight"}, %arg353: tensor<1024xf32> {dit.param = "blocks.18.norm3.weight"}, %arg354: tensor<2048x1024xf32> {dit.param = "blocks.18.mlp.w1.weight"}, %arg355: tensor<2048x1024xf32> {dit.param = "blocks.18.mlp.w2.weight"}, %arg356: tensor<1024x2048xf32> {dit.param = "blocks.18.mlp.w3.weight"}, %arg357: tensor<6144x1024xf32> {dit.param = "blocks.19.adaLN_modulation.1.weight"}, %arg358: tensor<6144xf32> {dit.param = "blocks.19.adaLN_modulation.1.bias"}, %arg359: tensor<1024xf32> {dit.param = "blocks.19.norm1.weight"}, %arg360: tensor<2688x1024xf32> {dit.param = "blocks.19.attn.qkv.weight"}, %arg361: tensor<1024x896xf32> {dit.param = "blocks.19.attn.proj.weight"}, %arg362: tensor<1024xf32> {dit.param = "blocks.19.norm2.weight"}, %arg363: tensor<1024x1024xf32> {dit.param = "blocks.19.cross_attn.q_linear.weight"}, %arg364: tensor<2048x1024xf32> {dit.param = "blocks.19.cross_attn.kv_linear.weight"}, %arg365: tensor<1024x1024xf32> {dit.param = "blocks.19.cross_attn.proj.weight"}, %arg366: tensor<1024xf32> {dit.param = "blocks.19.norm3.weight"}, %arg367: tensor<8x1024xf32> {dit.param = "blocks.19.mlp.gate.weight"}, %arg368: tensor<8x1024x3072xf32> {dit.param = "blocks.19.mlp.w1"}, %arg369: tensor<8x3072x1024xf32> {dit.param = "blocks.19.mlp.w2"}, %arg370: tensor<6144x1024xf32> {dit.param = "blocks.20.adaLN_modulation.1.weight"}, %arg371: tensor<6144xf32> {dit.param = "blocks.20.adaLN_modulation.1.bias"}, %arg372: tensor<1024xf32> {dit.param = "blocks.20.norm1.weight"}, %arg373: tensor<2688x1024xf32> {dit.param = "blocks.20.attn.qkv.weight"}, %arg374: tensor<1024x896xf32> {dit.param = "blocks.20.attn.proj.weight"}, %arg375: tensor<1024xf32> {dit.param = "blocks.20.norm2.weight"}, %arg376: tensor<1024x1024xf32> {dit.param = "blocks.20.cross_attn.q_linear.weight"}, %arg377: tensor<2048x1024xf32> {dit.param = "blocks.20.cross_attn.kv_linear.weight"}, %arg378: tensor<1024x1024xf32> {dit.param = "blocks.20.cross_attn.proj.weight"}, %arg379: tensor<1024xf32> {dit.param = "blocks.20.norm3.weight"}, %arg380: tensor<2304x1024xf32> {dit.param = "blocks.20.mlp.w1.weight"}, %arg381: tensor<2304x1024xf32> {dit.param = "blocks.20.mlp.w2.weight"}, %arg382: tensor<1024x2304xf32> {dit.param = "blocks.20.mlp.w3.weight"}, %arg383: tensor<6144x1024xf32> {dit.param = "blocks.21.adaLN_modulation.1.weight"}, %arg384: tensor<6144xf32> {dit.param = "blocks.21.adaLN_modulation.1.bias"}, %arg385: tensor<1024xf32> {dit.param = "blocks.21.norm1.weight"}, %arg386: tensor<3072x1024xf32> {dit.param = "blocks.21.attn.qkv.weight"}, %arg387: tensor<1024x1024xf32> {dit.param = "blocks.21.attn.proj.weight"}, %arg388: tensor<1024xf32> {dit.param = "blocks.21.norm2.weight"}, %arg389: tensor<1024x1024xf32> {dit.param = "blocks.21.cross_attn.q_linear.weight"}, %arg390: tensor<2048x1024xf32> {dit.param = "blocks.21.cross_attn.kv_linear.weight"}, %arg391: tensor<1024x1024xf32> {dit.param = "blocks.21.cross_attn.proj.weight"}, %arg392: tensor<1024xf32> {dit.param = "blocks.21.norm3.weight"}, %arg393: tensor<8x1024xf32> {dit.param = "blocks.21.mlp.gate.weight"}, %arg394: tensor<8x1024x3328xf32> {dit.param = "blocks.21.mlp.w1"}, %arg395: tensor<8x3328x1024xf32> {dit.param = "blocks.21.mlp.w2"}, %arg396: tensor<6144x1024xf32> {dit.param = "blocks.22.adaLN_modulation.1.weight"}, %arg397: tensor<6144xf32> {dit.param = "blocks.22.adaLN_modulation.1.bias"}, %arg398: tensor<1024xf32> {dit.param = "blocks.22.norm1.weight"}, %arg399: tensor<3072x1024xf32> {dit.param = "blocks.22.attn.qkv.weight"}, %arg400: tensor<1024x1024xf32> {dit.param = "blocks.22.attn.proj.weight"}, %arg401: tensor<1024xf32> {dit.param = "blocks.22.norm2.weight"}, %arg402: tensor<1024x1024xf32> {dit.param = "blocks.22.cross_attn.q_linear.weight"}, %arg403: tensor<2048x1024xf32> {dit.param = "blocks.22.cross_attn.kv_linear.weight"}, %arg404: tensor<1024x1024xf32> {dit.param = "blocks.22.cross_attn.proj.weight"}, %arg405: tensor<1024xf32> {dit.param = "blocks.22.norm3.weight"}, %arg406: tensor<2304x1024xf32> {dit.param = "blocks.22.mlp.w1.weight"}, %arg407: tensor<2304x1024xf32> {dit.param = "blocks.22.mlp.w2.weight"}, %arg408: tensor<1024x2304xf32> {dit.param = "blocks.22.mlp.w3.weight"}, %arg409: tensor<6144x1024xf32> {dit.param = "blocks.23.adaLN_modulation.1.weight"}, %arg410: tensor<6144xf32> {dit.param = "blocks.23.adaLN_modulation.1.bias"}, %arg411: tensor<1024xf32> {dit.param = "blocks.23.norm1.weight"}, %arg412: tensor<3072x1024xf32> {dit.param = "blocks.23.attn.qkv.weight"}, %arg413: tensor<1024x1024xf32> {dit.param = "blocks.23.attn.proj.weight"}, %arg414: tensor<1024xf32> {dit.param = "blocks.23.norm2.weight"}, %arg415: tensor<1024x1024xf32> {dit.param = "blocks.23.cross_attn.q_linear.weight"}, %arg416: tensor<2048x1024xf32> {dit.param = "blocks.23.cross_attn.kv_linear.weight"}, %arg417: tensor<1024x1024xf32> {dit.param = "blocks.23.cross_attn.proj.weight"}, %arg418: tensor<1024xf32> {dit.param = "blocks.23.norm3.weight"}, %arg419: tensor<8x1024xf32> {dit.param = "blocks.23.mlp.gate.weight"}, %arg420: tensor<8x1024x3584xf32> {dit.param = "blocks.23.mlp.w1"}, %arg421: tensor<8x3584x1024xf32> {dit.param = "blocks.23.mlp.w2"}, %arg422: tensor<6144x1024xf32> {dit.param = "blocks.24.adaLN_modulation.1.weight"}, %arg423: tensor<6144xf32> {dit.param = "blocks.24.adaLN_modulation.1.bias"}, %arg424: tensor<1024xf32> {dit.param = "blocks.24.norm1.weight"}, %arg425: tensor<3072x1024xf32> {dit.param = "blocks.24.attn.qkv.weight"}, %arg426: tensor<1024x1024xf32> {dit.param = "blocks.24.attn.proj.weight"}, %arg427: tensor<1024xf32> {dit.param = "blocks.24.norm2.weight"}, %arg428: tensor<1024x1024xf32> {dit.param = "blocks.24.cross_attn.q_linear.weight"}, %arg429: tensor<2048x1024xf32> {dit.param = "blocks.24.cross_attn.kv_linear.weight"}, %arg430: tensor<1024x1024xf32> {dit.param = "blocks.24.cross_attn.proj.weight"}, %arg431: tensor<1024xf32> {dit.param = "blocks.24.norm3.weight"}, %arg432: tensor<2560x1024xf32> {dit.param = "blocks.24.mlp.w1.weight"}, %arg433: tensor<2560x1024xf32> {dit.param = "blocks.24.mlp.w2.weight"}, %arg434: tensor<1024x2560xf32> {dit.param = "blocks.24.mlp.w3.weight"}, %arg435: tensor<6144x1024xf32> {dit.param = "blocks.25.adaLN_modulation.1.weight"}, %arg436: tensor<6144xf32> {dit.param = "blocks.25.adaLN_modulation.1.bias"}, %arg437: tensor<1024xf32> {dit.param = "blocks.25.norm1.weight"}, %arg438: tensor<3072x1024xf32> {dit.param = "blocks.25.attn.qkv.weight"}, %arg439: tensor<1024x1024xf32> {dit.param = "blocks.25.attn.proj.weight"}, %arg440: tensor<1024xf32> {dit.param = "blocks.25.norm2.weight"}, %arg441: tensor<1024x1024xf32> {dit.param = "blocks.25.cross_attn.q_linear.weight"}, %arg442: tensor<2048x1024xf32> {dit.param = "blocks.25.cross_attn.kv_linear.weight"}, %arg443: tensor<1024x1024xf32> {dit.param = "blocks.25.cross_attn.proj.weight"}, %arg444: tensor<1024xf32> {dit.param = "blocks.25.norm3.weight"}, %arg445: tensor<8x1024xf32> {dit.param = "blocks.25.mlp.gate.weight"}, %arg446: tensor<8x1024x3840xf32> {dit.param = "blocks.25.mlp.w1"}, %arg447: tensor<8x3840x1024xf32> {dit.param = "blocks.25.mlp.w2"}, %arg448: tensor<6144x1024xf32> {dit.param = "blocks.26.adaLN_modulation.1.weight"}, %arg449: tensor<6144xf32> {dit.param = "blocks.26.adaLN_modulation.1.bias"}, %arg450: tensor<1024xf32> {dit.param = "blocks.26.norm1.weight"}, %arg451: tensor<3072x1024xf32> {dit.param = "blocks.26.attn.qkv.weight"}, %arg452: tensor<1024x1024xf32> {dit.param = "blocks.26.attn.proj.weight"}, %arg453: tensor<1024xf32> {dit.param = "blocks.26.norm2.weight"}, %arg454: tensor<1024x1024xf32> {dit.param = "blocks.26.cross_attn.q_linear.weight"}, %arg455: tensor<2048x1024xf32> {dit.param = "blocks.26.cross_attn.kv_linear.weight"}, %arg456: tensor<1024x1024xf32> {dit.param = "blocks.26.cross_attn.proj.weight"}, %arg457: tensor<1024xf32> {dit.param = "blocks.26.norm3.weight"}, %arg458: tensor<2816x1024xf32> {dit.param = "blocks.26.mlp.w1.weight"}, %arg459: tensor<2816x1024xf32> {dit.param = "blocks.26.mlp.w2.weight"}, %arg460: tensor<1024x2816xf32> {dit.param = "blocks.26.mlp.w3.weight"}, %arg461: tensor<6144x1024xf32> {dit.param = "blocks.27.adaLN_modulation.1.weight"}, %arg462: tensor<6144xf32> {dit.param = "blocks.27.adaLN_modulation.1.bias"}, %arg463: tensor<1024xf32> {dit.param = "blocks.27.norm1.weight"}, %arg464: tensor<3072x1024xf32> {dit.param = "blocks.27.attn.qkv.weight"}, %arg465: tensor<1024x1024xf32> {dit.param = "blocks.27.attn.proj.weight"}, %arg466: tensor<1024xf32> {dit.param = "blocks.27.norm2.weight"}, %arg467: tensor<1024x1024xf32> {dit.param = "blocks.27.cross_attn.q_linear.weight"}, %arg468: tensor<2048x1024xf32> {dit.param = "blocks.27.cross_attn.kv_linear.weight"}, %arg469: tensor<1024x1024xf32> {dit.param = "blocks.27.cross_attn.proj.weight"}, %arg470: tensor<1024xf32> {dit.param = "blocks.27.norm3.weight"}, %arg471: tensor<2816x1024xf32> {dit.param = "blocks.27.mlp.w1.weight"}, %arg472: tensor<2816x1024xf32> {dit.param = "blocks.27.mlp.w2.weight"}, %arg473: tensor<1024x2816xf32> {dit.param = "blocks.27.mlp.w3.weight"}, %arg474: tensor<2048x1024xf32> {dit.param = "final_layer.adaLN_modulation.1.weight"}, %arg475: tensor<2048xf32> {dit.param = "final_layer.adaLN_modulation.1.bias"}, %arg476: tensor<1024xf32> {dit.param = "final_layer.norm_final.weight"}, %arg477: tensor<16x1024xf32> {dit.param = "final_layer.linear.weight"}, %arg478: tensor<16xf32> {dit.param = "final_layer.linear.bias"}) -> tensor<1x4x32x32xf32> {
    %0 = dit.patch_embed %arg0, %arg3, %arg4 : (tensor<1x4x32x32xf32>, tensor<1024x4x2x2xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %1 = dit.sincos_pos_embed {dim = 1024 : i64, grid = array<i64: 16, 16>, interp_scale = 1.000000e+00 : f64, state_name = "pos_embed"} : () -> tensor<256x1024xf32>
    %2 = dit.add %0, %1 : (tensor<1x256x1024xf32>, tensor<256x1024xf32>) -> tensor<1x256x1024xf32>
    %3 = dit.timestep_embed %arg1 {dim = 512 : i64} : (tensor<1xf32>) -> tensor<1x512xf32>
    %4 = dit.mlp %3, %arg5, %arg7 biases %arg6, %arg8 {activation = #dit.activation<gelu_tanh>} : (tensor<1x512xf32>, tensor<1024x512xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024xf32>) -> tensor<1x1024xf32>
    %5 = dit.linear %arg2, %arg9 bias %arg10 : (tensor<1x77x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>) -> tensor<1x77x1024xf32>
    %6 = dit.gelu %5 {approximate} : tensor<1x77x1024xf32>
    %7 = dit.layer_norm %6 weight %arg11 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>, tensor<1024xf32>) -> tensor<1x77x1024xf32>
    %8 = dit.linear %7, %arg12 bias %arg13 : (tensor<1x77x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>) -> tensor<1x77x1024xf32>
    %9 = call @caption_refiner_block(%8, %arg14, %arg15, %arg16, %arg17, %arg18, %arg19, %arg20) : (tensor<1x77x1024xf32>, tensor<1024xf32>, tensor<3072x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<2816x1024xf32>, tensor<2816x1024xf32>, tensor<1024x2816xf32>) -> tensor<1x77x1024xf32>
    %10 = dit.token_mean %9 : (tensor<1x77x1024xf32>) -> tensor<1x1024xf32>
    %11 = dit.linear %10, %arg21 bias %arg22 : (tensor<1x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>) -> tensor<1x1024xf32>
    %12 = dit.gelu %11 {approximate} : tensor<1x1024xf32>
    %13 = dit.layer_norm %12 weight %arg23 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x1024xf32>, tensor<1024xf32>) -> tensor<1x1024xf32>
    %14 = dit.linear %13, %arg24 bias %arg25 : (tensor<1x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>) -> tensor<1x1024xf32>
    %15 = dit.add %4, %14 : (tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x1024xf32>
    %16 = dit.layer_norm %2 weight %arg26 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %17 = dit.linear %16, %arg27 : (tensor<1x256x1024xf32>, tensor<768x1024xf32>) -> tensor<1x256x768xf32>
    %18 = dit.layer_norm %9 weight %arg28 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x77x1024xf32>, tensor<1024xf32>) -> tensor<1x77x1024xf32>
    %19 = dit.linear %18, %arg29 : (tensor<1x77x1024xf32>, tensor<768x1024xf32>) -> tensor<1x77x768xf32>
    %20 = call @microdit_mixer_dense_block(%17, %19, %15, %arg30, %arg31, %arg32, %arg33, %arg34, %arg35, %arg36, %arg37, %arg38, %arg39, %arg40, %arg41, %arg42) : (tensor<1x256x768xf32>, tensor<1x77x768xf32>, tensor<1x1024xf32>, tensor<4608x1024xf32>, tensor<4608xf32>, tensor<768xf32>, tensor<2304x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<768x768xf32>, tensor<1536x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<2048x768xf32>, tensor<2048x768xf32>, tensor<768x2048xf32>) -> tensor<1x256x768xf32>
    %21 = call @microdit_mixer_moe_block(%20, %19, %15, %arg43, %arg44, %arg45, %arg46, %arg47, %arg48, %arg49, %arg50, %arg51, %arg52, %arg53, %arg54, %arg55) : (tensor<1x256x768xf32>, tensor<1x77x768xf32>, tensor<1x1024xf32>, tensor<4608x1024xf32>, tensor<4608xf32>, tensor<768xf32>, tensor<2304x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<768x768xf32>, tensor<1536x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<8x768xf32>, tensor<8x768x3072xf32>, tensor<8x3072x768xf32>) -> tensor<1x256x768xf32>
    %22 = call @microdit_mixer_dense_block(%21, %19, %15, %arg56, %arg57, %arg58, %arg59, %arg60, %arg61, %arg62, %arg63, %arg64, %arg65, %arg66, %arg67, %arg68) : (tensor<1x256x768xf32>, tensor<1x77x768xf32>, tensor<1x1024xf32>, tensor<4608x1024xf32>, tensor<4608xf32>, tensor<768xf32>, tensor<2304x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<768x768xf32>, tensor<1536x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<2048x768xf32>, tensor<2048x768xf32>, tensor<768x2048xf32>) -> tensor<1x256x768xf32>
    %23 = call @microdit_mixer_moe_block(%22, %19, %15, %arg69, %arg70, %arg71, %arg72, %arg73, %arg74, %arg75, %arg76, %arg77, %arg78, %arg79, %arg80, %arg81) : (tensor<1x256x768xf32>, tensor<1x77x768xf32>, tensor<1x1024xf32>, tensor<4608x1024xf32>, tensor<4608xf32>, tensor<768xf32>, tensor<2304x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<768x768xf32>, tensor<1536x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<8x768xf32>, tensor<8x768x3072xf32>, tensor<8x3072x768xf32>) -> tensor<1x256x768xf32>
    %24 = call @microdit_mixer_dense_block(%23, %19, %15, %arg82, %arg83, %arg84, %arg85, %arg86, %arg87, %arg88, %arg89, %arg90, %arg91, %arg92, %arg93, %arg94) : (tensor<1x256x768xf32>, tensor<1x77x768xf32>, tensor<1x1024xf32>, tensor<4608x1024xf32>, tensor<4608xf32>, tensor<768xf32>, tensor<2304x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<768x768xf32>, tensor<1536x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<2048x768xf32>, tensor<2048x768xf32>, tensor<768x2048xf32>) -> tensor<1x256x768xf32>
    %25 = call @microdit_mixer_moe_block(%24, %19, %15, %arg95, %arg96, %arg97, %arg98, %arg99, %arg100, %arg101, %arg102, %arg103, %arg104, %arg105, %arg106, %arg107) : (tensor<1x256x768xf32>, tensor<1x77x768xf32>, tensor<1x1024xf32>, tensor<4608x1024xf32>, tensor<4608xf32>, tensor<768xf32>, tensor<2304x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<768x768xf32>, tensor<1536x768xf32>, tensor<768x768xf32>, tensor<768xf32>, tensor<8x768xf32>, tensor<8x768x3072xf32>, tensor<8x3072x768xf32>) -> tensor<1x256x768xf32>
    %26 = dit.layer_norm %25 weight %arg108 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x768xf32>, tensor<768xf32>) -> tensor<1x256x768xf32>
    %27 = dit.linear %26, %arg109 : (tensor<1x256x768xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %28 = call @microdit_dense_block(%27, %9, %15, %arg110, %arg111, %arg112, %arg113, %arg114, %arg115, %arg116, %arg117, %arg118, %arg119, %arg120, %arg121, %arg122) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<1536x1024xf32>, tensor<1024x512xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<512x1024xf32>, tensor<512x1024xf32>, tensor<1024x512xf32>) -> tensor<1x256x1024xf32>
    %29 = call @microdit_moe_block(%28, %9, %15, %arg123, %arg124, %arg125, %arg126, %arg127, %arg128, %arg129, %arg130, %arg131, %arg132, %arg133, %arg134, %arg135) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<1920x1024xf32>, tensor<1024x640xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x768xf32>, tensor<8x768x1024xf32>) -> tensor<1x256x1024xf32>
    %30 = call @microdit_dense_block_1(%29, %9, %15, %arg136, %arg137, %arg138, %arg139, %arg140, %arg141, %arg142, %arg143, %arg144, %arg145, %arg146, %arg147, %arg148) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<1920x1024xf32>, tensor<1024x640xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<768x1024xf32>, tensor<768x1024xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %31 = call @microdit_moe_block_1(%30, %9, %15, %arg149, %arg150, %arg151, %arg152, %arg153, %arg154, %arg155, %arg156, %arg157, %arg158, %arg159, %arg160, %arg161) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<1920x1024xf32>, tensor<1024x640xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x1024xf32>, tensor<8x1024x1024xf32>) -> tensor<1x256x1024xf32>
    %32 = call @microdit_dense_block_1(%31, %9, %15, %arg162, %arg163, %arg164, %arg165, %arg166, %arg167, %arg168, %arg169, %arg170, %arg171, %arg172, %arg173, %arg174) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<1920x1024xf32>, tensor<1024x640xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<768x1024xf32>, tensor<768x1024xf32>, tensor<1024x768xf32>) -> tensor<1x256x1024xf32>
    %33 = call @microdit_moe_block_2(%32, %9, %15, %arg175, %arg176, %arg177, %arg178, %arg179, %arg180, %arg181, %arg182, %arg183, %arg184, %arg185, %arg186, %arg187) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<1920x1024xf32>, tensor<1024x640xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x1280xf32>, tensor<8x1280x1024xf32>) -> tensor<1x256x1024xf32>
    %34 = call @microdit_dense_block_2(%33, %9, %15, %arg188, %arg189, %arg190, %arg191, %arg192, %arg193, %arg194, %arg195, %arg196, %arg197, %arg198, %arg199, %arg200) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<1920x1024xf32>, tensor<1024x640xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<1024x1024xf32>, tensor<1024x1024xf32>) -> tensor<1x256x1024xf32>
    %35 = call @microdit_moe_block_3(%34, %9, %15, %arg201, %arg202, %arg203, %arg204, %arg205, %arg206, %arg207, %arg208, %arg209, %arg210, %arg211, %arg212, %arg213) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<1024x768xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x1536xf32>, tensor<8x1536x1024xf32>) -> tensor<1x256x1024xf32>
    %36 = call @microdit_dense_block_3(%35, %9, %15, %arg214, %arg215, %arg216, %arg217, %arg218, %arg219, %arg220, %arg221, %arg222, %arg223, %arg224, %arg225, %arg226) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<1024x768xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1280x1024xf32>, tensor<1280x1024xf32>, tensor<1024x1280xf32>) -> tensor<1x256x1024xf32>
    %37 = call @microdit_moe_block_4(%36, %9, %15, %arg227, %arg228, %arg229, %arg230, %arg231, %arg232, %arg233, %arg234, %arg235, %arg236, %arg237, %arg238, %arg239) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<1024x768xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x1792xf32>, tensor<8x1792x1024xf32>) -> tensor<1x256x1024xf32>
    %38 = call @microdit_dense_block_3(%37, %9, %15, %arg240, %arg241, %arg242, %arg243, %arg244, %arg245, %arg246, %arg247, %arg248, %arg249, %arg250, %arg251, %arg252) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<1024x768xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1280x1024xf32>, tensor<1280x1024xf32>, tensor<1024x1280xf32>) -> tensor<1x256x1024xf32>
    %39 = call @microdit_moe_block_5(%38, %9, %15, %arg253, %arg254, %arg255, %arg256, %arg257, %arg258, %arg259, %arg260, %arg261, %arg262, %arg263, %arg264, %arg265) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<1024x768xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x2048xf32>, tensor<8x2048x1024xf32>) -> tensor<1x256x1024xf32>
    %40 = call @microdit_dense_block_4(%39, %9, %15, %arg266, %arg267, %arg268, %arg269, %arg270, %arg271, %arg272, %arg273, %arg274, %arg275, %arg276, %arg277, %arg278) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<1024x768xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1536x1024xf32>, tensor<1536x1024xf32>, tensor<1024x1536xf32>) -> tensor<1x256x1024xf32>
    %41 = call @microdit_moe_block_6(%40, %9, %15, %arg279, %arg280, %arg281, %arg282, %arg283, %arg284, %arg285, %arg286, %arg287, %arg288, %arg289, %arg290, %arg291) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<1024x768xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x2304xf32>, tensor<8x2304x1024xf32>) -> tensor<1x256x1024xf32>
    %42 = call @microdit_dense_block_5(%41, %9, %15, %arg292, %arg293, %arg294, %arg295, %arg296, %arg297, %arg298, %arg299, %arg300, %arg301, %arg302, %arg303, %arg304) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2688x1024xf32>, tensor<1024x896xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1792x1024xf32>, tensor<1792x1024xf32>, tensor<1024x1792xf32>) -> tensor<1x256x1024xf32>
    %43 = call @microdit_moe_block_7(%42, %9, %15, %arg305, %arg306, %arg307, %arg308, %arg309, %arg310, %arg311, %arg312, %arg313, %arg314, %arg315, %arg316, %arg317) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2688x1024xf32>, tensor<1024x896xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x2560xf32>, tensor<8x2560x1024xf32>) -> tensor<1x256x1024xf32>
    %44 = call @microdit_dense_block_5(%43, %9, %15, %arg318, %arg319, %arg320, %arg321, %arg322, %arg323, %arg324, %arg325, %arg326, %arg327, %arg328, %arg329, %arg330) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2688x1024xf32>, tensor<1024x896xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1792x1024xf32>, tensor<1792x1024xf32>, tensor<1024x1792xf32>) -> tensor<1x256x1024xf32>
    %45 = call @microdit_moe_block_8(%44, %9, %15, %arg331, %arg332, %arg333, %arg334, %arg335, %arg336, %arg337, %arg338, %arg339, %arg340, %arg341, %arg342, %arg343) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2688x1024xf32>, tensor<1024x896xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x2816xf32>, tensor<8x2816x1024xf32>) -> tensor<1x256x1024xf32>
    %46 = call @microdit_dense_block_6(%45, %9, %15, %arg344, %arg345, %arg346, %arg347, %arg348, %arg349, %arg350, %arg351, %arg352, %arg353, %arg354, %arg355, %arg356) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2688x1024xf32>, tensor<1024x896xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<2048x1024xf32>, tensor<2048x1024xf32>, tensor<1024x2048xf32>) -> tensor<1x256x1024xf32>
    %47 = call @microdit_moe_block_9(%46, %9, %15, %arg357, %arg358, %arg359, %arg360, %arg361, %arg362, %arg363, %arg364, %arg365, %arg366, %arg367, %arg368, %arg369) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2688x1024xf32>, tensor<1024x896xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x3072xf32>, tensor<8x3072x1024xf32>) -> tensor<1x256x1024xf32>
    %48 = call @microdit_dense_block_7(%47, %9, %15, %arg370, %arg371, %arg372, %arg373, %arg374, %arg375, %arg376, %arg377, %arg378, %arg379, %arg380, %arg381, %arg382) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<2688x1024xf32>, tensor<1024x896xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<2304x1024xf32>, tensor<1024x2304xf32>) -> tensor<1x256x1024xf32>
    %49 = call @microdit_moe_block_10(%48, %9, %15, %arg383, %arg384, %arg385, %arg386, %arg387, %arg388, %arg389, %arg390, %arg391, %arg392, %arg393, %arg394, %arg395) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<3072x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x3328xf32>, tensor<8x3328x1024xf32>) -> tensor<1x256x1024xf32>
    %50 = call @microdit_dense_block_8(%49, %9, %15, %arg396, %arg397, %arg398, %arg399, %arg400, %arg401, %arg402, %arg403, %arg404, %arg405, %arg406, %arg407, %arg408) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<3072x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<2304x1024xf32>, tensor<2304x1024xf32>, tensor<1024x2304xf32>) -> tensor<1x256x1024xf32>
    %51 = call @microdit_moe_block_11(%50, %9, %15, %arg409, %arg410, %arg411, %arg412, %arg413, %arg414, %arg415, %arg416, %arg417, %arg418, %arg419, %arg420, %arg421) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<3072x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x3584xf32>, tensor<8x3584x1024xf32>) -> tensor<1x256x1024xf32>
    %52 = call @microdit_dense_block_9(%51, %9, %15, %arg422, %arg423, %arg424, %arg425, %arg426, %arg427, %arg428, %arg429, %arg430, %arg431, %arg432, %arg433, %arg434) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<3072x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<2560x1024xf32>, tensor<2560x1024xf32>, tensor<1024x2560xf32>) -> tensor<1x256x1024xf32>
    %53 = call @microdit_moe_block_12(%52, %9, %15, %arg435, %arg436, %arg437, %arg438, %arg439, %arg440, %arg441, %arg442, %arg443, %arg444, %arg445, %arg446, %arg447) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<3072x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<8x1024xf32>, tensor<8x1024x3840xf32>, tensor<8x3840x1024xf32>) -> tensor<1x256x1024xf32>
    %54 = call @microdit_dense_block_10(%53, %9, %15, %arg448, %arg449, %arg450, %arg451, %arg452, %arg453, %arg454, %arg455, %arg456, %arg457, %arg458, %arg459, %arg460) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<3072x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<2816x1024xf32>, tensor<2816x1024xf32>, tensor<1024x2816xf32>) -> tensor<1x256x1024xf32>
    %55 = call @microdit_dense_block_10(%54, %9, %15, %arg461, %arg462, %arg463, %arg464, %arg465, %arg466, %arg467, %arg468, %arg469, %arg470, %arg471, %arg472, %arg473) : (tensor<1x256x1024xf32>, tensor<1x77x1024xf32>, tensor<1x1024xf32>, tensor<6144x1024xf32>, tensor<6144xf32>, tensor<1024xf32>, tensor<3072x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<1024x1024xf32>, tensor<2048x1024xf32>, tensor<1024x1024xf32>, tensor<1024xf32>, tensor<2816x1024xf32>, tensor<2816x1024xf32>, tensor<1024x2816xf32>) -> tensor<1x256x1024xf32>
    %56 = dit.gelu %15 {approximate} : tensor<1x1024xf32>
    %57 = dit.linear %56, %arg474 bias %arg475 : (tensor<1x1024xf32>, tensor<2048x1024xf32>, tensor<2048xf32>) -> tensor<1x2048xf32>
    %58:2 = dit.split %57 : (tensor<1x2048xf32>) -> (tensor<1x1024xf32>, tensor<1x1024xf32>)
    %59 = dit.layer_norm %55 weight %arg476 {epsilon = 9.9999999999999995E-7 : f64} : (tensor<1x256x1024xf32>, tensor<1024xf32>) -> tensor<1x256x1024xf32>
    %60 = dit.modulate %59, %58#0, %58#1 : (tensor<1x256x1024xf32>, tensor<1x1024xf32>, tensor<1x1024xf32>) -> tensor<1x256x1024xf32>
    %61 = dit.linear %60, %arg477 bias %arg478 : (tensor<1x256x1024xf32>, tensor<16x1024xf32>, tensor<16xf32>) -> tensor<1x256x16xf32>
    %62 = dit.unpatchify %61 {grid = array<i64: 16, 16>, patch_size = 2 : i64} : (tensor<1x256x16xf32>) -> tensor<1x4x32x32xf32>
    return %62 : tensor<1x4x32x32xf32>
  }
}

