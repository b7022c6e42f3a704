// Renderer entry and composition root: choose the API, build the state on it, mount the console.
import { mount } from 'svelte';
import App from './App.svelte';
import { ComponentsState } from './components.svelte.js';
import { placeholderConsoleApi } from './console-api.js';

const target = document.getElementById('app');
if (!target) throw new Error('index.html has no #app element to mount into');

mount(App, { target, props: { components: new ComponentsState(placeholderConsoleApi) } });
