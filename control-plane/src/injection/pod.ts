/** The parts of a Kubernetes Pod the injector reads (admission-review.ts checks their types). */
export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: unknown;
}

export interface Container {
  readonly name: string;
  readonly ports?: readonly { readonly containerPort: number; readonly name?: string; readonly protocol?: string }[];
  readonly env?: readonly EnvVar[];
  readonly securityContext?: { readonly runAsUser?: number };
  readonly restartPolicy?: string;
}

export interface Pod {
  readonly metadata?: {
    readonly name?: string;
    readonly generateName?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
  };
  readonly spec: {
    readonly containers: readonly Container[];
    readonly initContainers?: readonly Container[];
    readonly volumes?: readonly { readonly name: string }[];
    readonly hostNetwork?: boolean;
    readonly securityContext?: { readonly runAsUser?: number };
  };
}
