// The plugins the engine loads: amdgpu over the real kernel, when an amdgpu render node exists.
import { PluginHost, Stage } from './host';
import { amdgpuPlugin } from './amdgpu/plugin';
import { RealSys, amdgpuPresent } from './amdgpu/real';

export function engineHost(stage: Stage, imagesDir: string, log: (msg: string) => void = () => {}): PluginHost {
  const host = new PluginHost(stage, imagesDir, log);
  if (amdgpuPresent()) host.register(amdgpuPlugin({ sys: new RealSys() }));
  return host;
}
