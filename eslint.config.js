// ESLint flat config: typescript-eslint with type information. Node code is checked against
// tsconfig.json, the worker and its workerd tests against tsconfig.worker.json (their globals differ).
import js from "@eslint/js";
import { defineConfig, globalIgnores } from "eslint/config";
import tseslint from "typescript-eslint";

const workerFiles = ["worker/**/*.ts", "worker/**/*.tsx", "tests/worker/**/*.ts", "tests/support/context.ts", "tests/support/provided-context.ts"];

export default defineConfig(
  globalIgnores([
    "node_modules/**",
    ".data/**",
    ".wrangler/**",
    "bench/results/**",
    "schema/migrations/**",
    "worker/worker-configuration.d.ts",
    "coverage/**",
    "dist/**",
  ]),
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    files: ["**/*.ts", "**/*.tsx"],
    languageOptions: {
      parserOptions: { project: "./tsconfig.json", tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    files: workerFiles,
    ignores: ["worker/cli/**", "worker/selfhost/**", "worker/src/dashboard/client/**"],
    languageOptions: {
      parserOptions: { project: "./tsconfig.worker.json", tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    files: ["worker/src/dashboard/client/**/*.ts"],
    languageOptions: {
      parserOptions: { project: "./tsconfig.dashboard.json", tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    files: ["**/*.ts", "**/*.tsx"],
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-non-null-assertion": "error",
      // tsc already reports unused locals and parameters (noUnusedLocals, noUnusedParameters).
      "@typescript-eslint/no-unused-vars": "off",
    },
  },
  {
    files: ["**/*.js"],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
